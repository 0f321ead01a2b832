#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 600), two at a time, and writes fuzz/results.md:
# one row per target with its final libFuzzer stats, and the details of any crash.
#
#   bash fuzz/run.sh [SECONDS]
#
# Exits non-zero when any target crashed (or timed out / ran out of memory on one input), or
# when one could not be run. The stable toolchain is used with RUSTC_BOOTSTRAP=1 (cargo-fuzz
# needs nightly flags). The sanitizer is AddressSanitizer unless FUZZ_SANITIZER says otherwise
# (`none` if the ASan runtime is missing); FUZZ_JOBS sets how many targets run at once.
#
# Seeds stay in fuzz/corpus/<target>/ (committed); each run copies them into fuzz/corpus-run/<target>/
# (git-ignored), where libFuzzer adds what it finds, so a later run goes on from there. Crashing
# inputs land in fuzz/artifacts/<target>/ and are copied to fuzz/artifacts-found/<target>/.
set -uo pipefail

seconds="${1:-600}"
case "$seconds" in
  '' | *[!0-9]*) echo "usage: bash fuzz/run.sh [SECONDS]" >&2; exit 2 ;;
esac
jobs="${FUZZ_JOBS:-2}"
sanitizer="${FUZZ_SANITIZER:-address}"

cd "$(dirname "$0")" || exit 2
fuzz_dir="$(pwd)"
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked || exit 2
fi

mapfile -t targets < <(cargo fuzz list)
if [ "${#targets[@]}" -eq 0 ]; then
  echo "no fuzz targets found" >&2
  exit 2
fi

mkdir -p artifacts/logs corpus-run
echo "== cargo fuzz build --sanitizer $sanitizer (all targets)"
if ! cargo fuzz build --sanitizer "$sanitizer" >artifacts/logs/build.log 2>&1; then
  if [ "$sanitizer" = address ]; then
    echo "   the AddressSanitizer build failed (see fuzz/artifacts/logs/build.log); retrying without a sanitizer"
    sanitizer=none
    cargo fuzz build --sanitizer none >artifacts/logs/build.log 2>&1 || {
      tail -30 artifacts/logs/build.log >&2
      exit 2
    }
  else
    tail -30 artifacts/logs/build.log >&2
    exit 2
  fi
fi
host="$(rustc -vV | sed -n 's/^host: //p')"
bin_dir="target/$host/release"

# The panic message, the backtrace frames in the project's code (hookrunner's src/ and the fuzz
# target), an AddressSanitizer report's first frames, and libFuzzer's verdict, from a run's log.
crash_excerpt() {
  awk '
    /panicked at/ { inpanic = 1 }
    inpanic && /^stack backtrace:/ { inpanic = 0; inbt = 1; next }
    inpanic { print; next }
    inbt && /^ *[0-9]+: / { frame = $0; next }
    inbt && /^ +at / { if ($0 !~ /\/rustc\/|\.cargo\/registry|\/csu\//) { print frame; print }; next }
    inbt && /^note:/ { inbt = 0; next }
    /ERROR: AddressSanitizer|ERROR: LeakSanitizer/ { asan = 1; n = 0 }
    asan && /^ +#[0-9]+ / && n < 25 { print; n++; next }
    /==[0-9]+== ?ERROR|^SUMMARY|^MS: |^Base64:|Test unit written|ALARM:/ { print }
  ' "$1"
}

# Runs one target; writes artifacts/logs/<target>.log and artifacts/logs/<target>.row.
run_target() {
  local target="$1"
  local log="artifacts/logs/$target.log"
  mkdir -p "corpus-run/$target" "artifacts/$target"
  if [ -d "corpus/$target" ]; then
    cp -f "corpus/$target"/* "corpus-run/$target"/ 2>/dev/null
  fi
  local stamp="artifacts/logs/$target.start"
  touch "$stamp"
  local started=$SECONDS
  "$bin_dir/$target" \
    -max_total_time="$seconds" \
    -timeout=10 \
    -rss_limit_mb=2048 \
    -print_final_stats=1 \
    -artifact_prefix="artifacts/$target/" \
    "corpus-run/$target" >"$log" 2>&1
  local status=$?
  local elapsed=$((SECONDS - started))

  # New crash-/timeout-/oom-/leak- files of this run, kept in artifacts-found/ too.
  local found=()
  local file
  while IFS= read -r file; do
    [ -n "$file" ] || continue
    found+=("$file")
    mkdir -p "artifacts-found/$target"
    cp -f "$file" "artifacts-found/$target/"
  done < <(find "artifacts/$target" -type f -newer "$stamp" \
             \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) 2>/dev/null)

  local execs rate last cov ft corpus
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
  last="$(grep -E '^#[0-9]+' "$log" | tail -1)"
  cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")"
  ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")"
  corpus="$(sed -n 's/.* corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p' <<<"$last")"
  if [ -z "$execs" ]; then
    execs="$(sed -n 's/^#\([0-9]*\).*/\1/p' <<<"$last")"
  fi
  local crashes="${#found[@]}"
  if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
    crashes="exit $status"
  fi
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' \
    "$target" "$elapsed" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corpus:-?}" "$crashes" \
    >"artifacts/logs/$target.row"
  if [ "$status" -ne 0 ] || [ "${#found[@]}" -gt 0 ]; then
    {
      echo "### $target"
      echo
      echo "libFuzzer exited with status $status after ${elapsed}s. Inputs: ${found[*]:-none written}"
      echo "(copied to fuzz/artifacts-found/$target/). Reproduce: \`bash fuzz/run.sh\` builds it, then"
      echo "\`fuzz/$bin_dir/$target fuzz/artifacts-found/$target/<file>\`, or"
      echo "\`RUSTC_BOOTSTRAP=1 cargo fuzz run $target fuzz/artifacts-found/$target/<file>\` from the repository root."
      echo
      echo '```'
      crash_excerpt "$log" | head -60
      echo '```'
      echo
    } >"artifacts/logs/$target.crash"
  else
    rm -f "artifacts/logs/$target.crash"
  fi
  rm -f "$stamp"
  echo "   $target: done in ${elapsed}s (status $status)"
}

echo "== fuzzing ${#targets[@]} targets for ${seconds}s each, $jobs at a time (sanitizer: $sanitizer)"
rm -f artifacts/logs/*.row artifacts/logs/*.crash
running=0
for target in "${targets[@]}"; do
  if [ "$running" -ge "$jobs" ]; then
    wait -n
    running=$((running - 1))
  fi
  echo "   $target: started"
  run_target "$target" &
  running=$((running + 1))
done
wait

failed=0
{
  echo "# Fuzzing results"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), \`bash fuzz/run.sh $seconds\`: ${seconds}s per target, $jobs at a time, sanitizer \`$sanitizer\`,"
  echo "$(rustc --version) with RUSTC_BOOTSTRAP=1, $(cargo fuzz --version 2>/dev/null). Stats are libFuzzer's final ones:"
  echo "executions and the average exec/s (\`stat::\`), then cov (coverage edges), ft (features) and corpus"
  echo "(units/size) from its last status line. The corpus grows in fuzz/corpus-run/ (git-ignored)."
  echo
  echo "| target | seconds | executions | exec/s | cov | ft | corpus | crashes |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
  for target in "${targets[@]}"; do
    if [ -f "artifacts/logs/$target.row" ]; then
      cat "artifacts/logs/$target.row"
    else
      echo "| $target | - | - | - | - | - | - | did not run |"
    fi
  done
  echo
  crash_files=(artifacts/logs/*.crash)
  if [ -e "${crash_files[0]}" ]; then
    echo "## Crashes"
    echo
    cat "${crash_files[@]}"
  else
    echo "No crashes."
  fi
} >results.md

for target in "${targets[@]}"; do
  if [ ! -f "artifacts/logs/$target.row" ] || [ -f "artifacts/logs/$target.crash" ]; then
    failed=1
  fi
done
cat results.md
echo
echo "== results in $fuzz_dir/results.md; logs in $fuzz_dir/artifacts/logs/"
exit "$failed"

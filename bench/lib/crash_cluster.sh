#!/usr/bin/env bash
# bench/lib/crash_cluster.sh — the cluster mode of the crash test: three hookrunner instances on
# one PostgreSQL, one of them SIGKILLed in the middle of each burst of async webhooks; no accepted
# job may be lost, stay unfinished or run twice.
#
#     bash bench/crash.sh --cluster [ROUNDS] [JOBS]   # defaults: 20 rounds, 150 jobs a burst
#     CRASH_SEED=12345 bash bench/crash.sh --cluster  # replay the kill points, victims and delays
#
# What it does
#   * Builds the release binary (as the single-instance mode does), starts a throwaway PostgreSQL
#     (tests/postgres/server.sh; its defaults, fsync on) and three instances `hr-1`, `hr-2`,
#     `hr-3` on free 127.0.0.1 ports with one config: `heartbeat: 1s`, `lease: 3s`, one async hook
#     `burst` (parallel, limit 12 across the cluster, `max_jobs: 4` each) whose command sleeps
#     50 ms and appends `$HOOK_JOB_ID <instance>` to done.txt (the instance's name comes in
#     through `env_passthrough`).
#   * Each round: JOBS async POSTs from 24 threads, request i to instance i mod 3
#     (bench/lib/crash_cluster.py burst). Right after the K-th 202 (all instances together) the
#     victim gets SIGKILL; the burst goes on with the two others. K, the victim and how long it
#     stays dead (0 .. CRASH_MAX_DOWN, so sometimes past the lease, when the others end its jobs,
#     and sometimes before, when it ends them itself at its restart) come from a RNG seeded with
#     CRASH_SEED (printed).
#   * Restarts the victim under the same name, then (crash.py check, through the restarted
#     instance) checks that every job id that got a 202, in all rounds, answers GET /jobs/{id}
#     and reaches a final status within CRASH_DEADLINE seconds, `succeeded` (with its line in
#     done.txt) or `interrupted` (the command cannot fail otherwise), and that no job id is in
#     done.txt twice. The two others run on through all rounds.
#   * Prints a line per round, then the table (202s, kill point, the instance killed, jobs found,
#     lost, not final, run twice), the final statuses and `N passed, M failed`; exits 1 if a round
#     failed.
#
# Settings (environment)
#   CRASH_SEED       seed of the kill points, victims and delays     (random; printed)
#   CRASH_CONC       requests in flight during a burst, 16..32        (24)
#   CRASH_DEADLINE   seconds for the check of a round                 (60)
#   CRASH_MAX_DOWN   longest time, in seconds, a victim stays dead    (6: twice the lease)
#   CRASH_KEEP=1     keep the temp dirs (config, done.txt, ids.tsv, results.jsonl, the instances'
#                    logs; PostgreSQL's data and log)
#   CRASH_SKIP_BUILD=1  use target/release/hookrunner as it is
#   CRASH_HR_LOG     RUST_LOG for hookrunner                           (info; logs go to the temp dir)
#
# Traffic goes only to 127.0.0.1. Every process it starts is ended on exit (trap).

set -euo pipefail

ROUNDS=${1:-20}
JOBS=${2:-150}
CONC=${CRASH_CONC:-24}
DEADLINE=${CRASH_DEADLINE:-60}
MAX_DOWN=${CRASH_MAX_DOWN:-6}
HR_LOG=${CRASH_HR_LOG:-info}
NAMES=(hr-1 hr-2 hr-3)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CLIENT_LIB="$ROOT/bench/lib/crash.py"
CLUSTER_LIB="$ROOT/bench/lib/crash_cluster.py"
BIN="$ROOT/target/release/hookrunner"
PY=${PYTHON:-python3}
# shellcheck source=bench/lib/crash_common.sh
source "$ROOT/bench/lib/crash_common.sh"
# shellcheck source=tests/postgres/server.sh
source "$ROOT/tests/postgres/server.sh"

[[ $ROUNDS =~ ^[0-9]+$ && $ROUNDS -ge 1 ]] || die "ROUNDS must be a positive integer, not '$ROUNDS'"
[[ $JOBS =~ ^[0-9]+$ && $JOBS -ge 2 ]] || die "JOBS must be an integer >= 2, not '$JOBS'"
[[ $CONC =~ ^[0-9]+$ && $CONC -ge 16 && $CONC -le 32 ]] || die "CRASH_CONC must be 16..32"
[[ $MAX_DOWN =~ ^[0-9]+$ ]] || die "CRASH_MAX_DOWN must be a whole number of seconds"
command -v "$PY" >/dev/null || die "python3 is needed"
if [[ -n ${CRASH_SEED:-} ]]; then
    [[ $CRASH_SEED =~ ^[0-9]+$ ]] || die "CRASH_SEED must be a non-negative integer"
    SEED=$CRASH_SEED
else
    SEED=$(( RANDOM << 15 | RANDOM ))
fi

# --- processes and clean-up ------------------------------------------------------------------------

PIDS=("" "" "")
PORTS=("" "" "")
WORK=""
PG_HOME=""

kill_instance() { # INDEX
    local pid=${PIDS[$1]}
    if [[ -n $pid ]]; then
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" || echo "crash.sh: ${NAMES[$1]} (pid $pid) did not go away" >&2
        PIDS[$1]=""
    fi
}

# shellcheck disable=SC2317  # reached through the trap
cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    end_client
    for i in "${!NAMES[@]}"; do kill_instance "$i"; done
    # The killed instances' commands (sleep 0.05; echo) may outlive them by a moment.
    sleep 0.3
    pg_stop
    if [[ ${CRASH_KEEP:-0} == 1 ]]; then
        [[ -n $WORK ]] && echo "kept: $WORK $PG_HOME"
    else
        [[ -n $WORK ]] && rm -rf "$WORK"
        [[ -n $PG_HOME ]] && rm -rf "$PG_HOME"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

build_release

WORK=$(mktemp -d /tmp/hookrunner-crash-cluster.XXXXXX)
PG_HOME=$(mktemp -d -t hookrunner-pg.XXXXXX)
pg_start "$PG_HOME" >/dev/null || die "PostgreSQL did not start"
STORE=$PG_URL

cat >"$WORK/hooks.yaml" <<EOF
server: {max_jobs: 4, max_pending: 100000, shutdown_grace: 5s, retention: {max_jobs: 100000000},
         heartbeat: 1s, lease: 3s}
hooks:
  - id: burst
    signature: none
    concurrency: {mode: parallel, limit: 12}
    run:
      shell: 'sleep 0.05; echo "\$HOOK_JOB_ID \$CRASH_INSTANCE" >> done.txt'
      workdir: $WORK
      env_passthrough: [CRASH_INSTANCE]
    response: {mode: async}
EOF
check_config_and_files

mapfile -t PLAN < <("$PY" "$CLUSTER_LIB" plan --seed "$SEED" --rounds "$ROUNDS" --jobs "$JOBS" \
    --instances "${#NAMES[@]}" --max-delay-ms $((MAX_DOWN * 1000)))

echo "crash test, cluster: $ROUNDS rounds of $JOBS async POSTs over ${NAMES[*]} on PostgreSQL," \
     "$CONC in flight, seed $SEED (replay: CRASH_SEED=$SEED bash bench/crash.sh --cluster $ROUNDS $JOBS)"
echo "work dir: $WORK"

# Starts instance INDEX on a free port and waits for /readyz; sets PIDS[INDEX] and PORTS[INDEX].
# Tries up to 10 times, a second apart: a restart may find its name still held for a moment by
# the killed process's connection. Returns 1 if it never got ready.
start_instance() { # INDEX LOG
    local index=$1 log=$2 name=${NAMES[$1]} try rc
    for try in {1..10}; do
        PORTS[index]=$("$PY" "$CLIENT_LIB" freeport)
        CRASH_INSTANCE=$name RUST_LOG=$HR_LOG "$BIN" serve --config "$WORK/hooks.yaml" \
            --listen "127.0.0.1:${PORTS[index]}" --state-dir "$WORK/state-$name" \
            --store "$STORE" --instance "$name" >>"$log" 2>&1 </dev/null &
        PIDS[index]=$!
        # No "Killed" job notice from bash for it; wait_gone watches /proc instead of the job.
        disown "${PIDS[index]}"
        rc=0
        client wait "http://127.0.0.1:${PORTS[index]}/readyz" --pid "${PIDS[index]}" --timeout 30 || rc=$?
        [[ $rc == 0 ]] && return 0
        echo "  $name (pid ${PIDS[index]}) did not get ready (try $try/10); its log ends:" >&2
        tail -n 3 "$log" | sed 's/^/    /' >&2
        kill_instance "$index"
        sleep 1
    done
    return 1
}

for i in "${!NAMES[@]}"; do
    start_instance "$i" "$WORK/${NAMES[i]}.log" || die "${NAMES[i]} did not start"
done

START=$(date +%s.%N)
aborted=0
for ((round = 1; round <= ROUNDS; round++)); do
    read -r kill_after victim delay_ms <<<"${PLAN[round - 1]}"
    delay=$(awk -v ms="$delay_ms" 'BEGIN {printf "%.3f", ms / 1000}')
    echo "round $round/$ROUNDS: kill ${NAMES[victim]} after 202 #$kill_after, restart it ${delay} s later"
    targets=()
    for i in "${!NAMES[@]}"; do
        targets+=(--url "http://127.0.0.1:${PORTS[i]}/hooks/burst" --pid "${PIDS[i]}" --name "${NAMES[i]}")
    done
    CLIENT_LIB=$CLUSTER_LIB client burst "${targets[@]}" --victim "$victim" --kill-after "$kill_after" \
        --n "$JOBS" --conc "$CONC" --ids-out "$IDS" --round "$round" --results "$RESULTS" \
        || fail_round "$round" "the burst client failed"
    # crash_cluster.py sent the SIGKILL; make sure, and wait until the process is gone.
    kill_instance "$victim"
    sleep "$delay"
    if ! start_instance "$victim" "$WORK/${NAMES[victim]}.log"; then
        fail_round "$round" "${NAMES[victim]} did not get ready after the crash"
        aborted=1
        break
    fi
    client check "http://127.0.0.1:${PORTS[victim]}" --ids "$IDS" --done "$DONE" --round "$round" \
        --results "$RESULTS" --deadline "$DEADLINE" --strict || fail_round "$round" "the check client failed"
done
END=$(date +%s.%N)

if [[ $aborted == 1 ]]; then
    echo "stopped after round $round: ${NAMES[victim]} would not start again" >&2
fi
echo
echo "seed $SEED, $ROUNDS rounds x $JOBS requests over ${#NAMES[@]} instances," \
     "$(awk -v a="$START" -v b="$END" 'BEGIN {printf "%.1f", b - a}') s"
rc=0
"$PY" "$CLIENT_LIB" report --results "$RESULTS" --rounds "$ROUNDS" || rc=$?
exit "$rc"

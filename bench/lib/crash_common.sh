# bench/lib/crash_common.sh — what both modes of bench/crash.sh share (sourced, not run): the
# Python client run so that a signal reaches the trap at once, waiting for a killed process to be
# gone, the release build, and recording a failed round.
#
# Expects: PY (python3), CLIENT_LIB (the .py file `client` runs), ROOT (the repository), RESULTS
# (the results file, once made).

CLIENT_PID=""

die() { echo "crash.sh: $*" >&2; exit 2; }

# Runs CLIENT_LIB in the background and waits for it, so that a TERM to the script runs the trap
# at once (bash runs traps only between foreground commands) and the trap can end the client.
client() {
    local rc=0
    "$PY" "$CLIENT_LIB" "$@" &
    CLIENT_PID=$!
    wait "$CLIENT_PID" || rc=$?
    CLIENT_PID=""
    return "$rc"
}

# Ends the client if one runs (from a trap).
end_client() {
    if [[ -n $CLIENT_PID ]]; then
        kill -TERM "$CLIENT_PID" 2>/dev/null || true
        wait "$CLIENT_PID" 2>/dev/null || true
        CLIENT_PID=""
    fi
}

# Waits (bounded) until PID is gone (or a zombie: bash reaps it). Returns 1 if it is still there
# after 30 s.
wait_gone() {
    local pid=$1 i state
    for ((i = 0; i < 300; i++)); do
        state=$(awk '{sub(/.*\) /, ""); print $1}' "/proc/$pid/stat" 2>/dev/null || true)
        [[ -z $state || $state == Z || $state == X ]] && break
        sleep 0.1
    done
    if [[ -n $state && $state != Z && $state != X ]]; then
        return 1
    fi
    wait "$pid" 2>/dev/null || true
    return 0
}

# Builds the release binary unless CRASH_SKIP_BUILD=1, retried once a minute while the tree does
# not build (others may be editing it).
build_release() {
    if [[ ${CRASH_SKIP_BUILD:-0} != 1 ]]; then
        echo "building hookrunner (cargo build --release)..."
        local built=0 attempt
        for attempt in 1 2 3 4 5 6; do
            if (cd "$ROOT" && cargo build --release --quiet); then
                built=1
                break
            fi
            echo "build failed (attempt $attempt/6; others may be editing); retrying in 60 s" >&2
            sleep 60
        done
        [[ $built == 1 ]] || die "cargo build --release kept failing"
    fi
    [[ -x $ROOT/target/release/hookrunner ]] || die "no binary at $ROOT/target/release/hookrunner"
}

fail_round() { # ROUND REASON
    "$PY" -c 'import json,sys; print(json.dumps({"kind":"failure","round":int(sys.argv[1]),"reason":sys.argv[2]}))' \
        "$1" "$2" >>"$RESULTS"
    echo "  FAIL: $2"
}

# check_config_and_files: refuses a config `hookrunner check` rejects, then starts the files both
# modes record into: IDS (accepted job ids), RESULTS (one JSON line per step), DONE (one line per
# command run). Needs BIN and WORK.
check_config_and_files() {
    "$BIN" check --config "$WORK/hooks.yaml" >/dev/null 2>"$WORK/check.err" \
        || { cat "$WORK/check.err" >&2; die "hookrunner check rejects the test config"; }
    IDS="$WORK/ids.tsv"
    RESULTS="$WORK/results.jsonl"
    DONE="$WORK/done.txt"
    : >"$IDS"
    : >"$RESULTS"
}

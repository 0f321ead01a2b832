#!/usr/bin/env bash
# bench/crash.sh — crash test: SIGKILL hookrunner in the middle of bursts of async webhooks, and
# check that no accepted job is lost and none runs twice.
#
# Run from anywhere (it works in the repository that holds it):
#     bash bench/crash.sh [ROUNDS] [BURST]        # defaults: 20 rounds, 200 requests a burst
#     CRASH_SEED=12345 bash bench/crash.sh        # replay the kill points of an earlier run
#     bash bench/crash.sh --cluster [ROUNDS] [JOBS]   # three instances on one PostgreSQL:
#                                                 # bench/lib/crash_cluster.sh says more
#
# What it does
#   * Builds the release binary (`cargo build --release`, retried once a minute while the tree
#     does not build), makes a temp dir with a config (one async hook `burst`, 4 in parallel,
#     whose command sleeps 50 ms and appends $HOOK_JOB_ID to done.txt in that dir).
#   * Each round: starts `hookrunner serve` on a free 127.0.0.1 port on the same state dir as the
#     round before, waits for /readyz, and fires BURST async POSTs at /hooks/burst from 24
#     threads (bench/lib/crash.py burst). Right after the K-th 202 it sends the server SIGKILL;
#     K is drawn in [1, BURST-1] from a RNG seeded with CRASH_SEED (printed), so a seed replays
#     its kill points (not the thread timing). Every job id whose 202 arrived whole is recorded.
#   * Waits for the killed process to be gone, restarts the server on the same state dir, and
#     checks (crash.py check) that every id recorded so far, in all rounds, answers
#     GET /jobs/{id} 200 and reaches a final status within CRASH_DEADLINE seconds, and that no
#     job id is in done.txt twice (a job must never run twice: the interrupted ones are not
#     re-run). Then SIGKILLs that server too; the next round starts it again.
#   * Prints a table per round (202s, kill point, jobs found, lost, not final, run twice), the
#     totals and `N passed, M failed`; exits 1 if a round failed.
# A round fails on: a recorded id that answers 404 (newly, in that round's check), an id that is
# not final by the deadline, an id newly in done.txt twice, a server that does not get ready,
# a burst that ended before its kill point.
#
# Settings (environment)
#   CRASH_SEED      seed of the kill points                        (random; printed)
#   CRASH_CONC      requests in flight during a burst, 16..32       (24)
#   CRASH_DEADLINE  seconds for the check of a round                (60)
#   CRASH_KEEP=1    keep the temp dir (/tmp/hookrunner-crash.*): config, state, done.txt,
#                   ids.tsv, results.jsonl, the server logs
#   CRASH_SKIP_BUILD=1  use target/release/hookrunner as it is
#   CRASH_HR_LOG    RUST_LOG for hookrunner                          (info; logs go to the temp dir)
#
# Traffic goes only to 127.0.0.1; each burst is BURST requests at most with a time limit, each
# check is bounded by CRASH_DEADLINE. Every process it starts is ended on exit (trap).
# The config adds `retention: {max_jobs: 100000000}` to the one in the brief, so that pruning
# (10,000 jobs by default) can never pass for a lost job, whatever ROUNDS x BURST.

set -euo pipefail

if [[ ${1:-} == --cluster ]]; then
    shift
    exec bash "$(dirname "${BASH_SOURCE[0]}")/lib/crash_cluster.sh" "$@"
fi

ROUNDS=${1:-20}
BURST=${2:-200}
CONC=${CRASH_CONC:-24}
DEADLINE=${CRASH_DEADLINE:-60}
HR_LOG=${CRASH_HR_LOG:-info}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLIENT_LIB="$ROOT/bench/lib/crash.py"
BIN="$ROOT/target/release/hookrunner"
PY=${PYTHON:-python3}
# shellcheck source=bench/lib/crash_common.sh
source "$ROOT/bench/lib/crash_common.sh"

[[ $ROUNDS =~ ^[0-9]+$ && $ROUNDS -ge 1 ]] || die "ROUNDS must be a positive integer, not '$ROUNDS'"
[[ $BURST =~ ^[0-9]+$ && $BURST -ge 2 ]] || die "BURST must be an integer >= 2, not '$BURST'"
[[ $CONC =~ ^[0-9]+$ && $CONC -ge 16 && $CONC -le 32 ]] || die "CRASH_CONC must be 16..32"
command -v "$PY" >/dev/null || die "python3 is needed"

if [[ -n ${CRASH_SEED:-} ]]; then
    [[ $CRASH_SEED =~ ^[0-9]+$ ]] || die "CRASH_SEED must be a non-negative integer"
    SEED=$CRASH_SEED
else
    SEED=$(( RANDOM << 15 | RANDOM ))
fi

# --- processes and clean-up --------------------------------------------------------------------------

SERVER_PID=""
WORK=""

kill_server() {
    if [[ -n $SERVER_PID ]]; then
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait_gone "$SERVER_PID" || echo "crash.sh: server pid $SERVER_PID did not go away" >&2
        SERVER_PID=""
    fi
}

# shellcheck disable=SC2317  # reached through the trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    end_client
    kill_server
    if [[ -n $WORK && -d $WORK ]]; then
        # The killed servers' commands (sleep 0.05; echo) may outlive them by a moment; let them
        # end before removing their workdir.
        sleep 0.3
        if [[ ${CRASH_KEEP:-0} == 1 ]]; then
            echo "kept: $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- build -------------------------------------------------------------------------------------------

build_release

# --- the test dir --------------------------------------------------------------------------------------

WORK=$(mktemp -d /tmp/hookrunner-crash.XXXXXX)
cat >"$WORK/hooks.yaml" <<EOF
server: {state_dir: state, max_jobs: 4, max_pending: 100000, shutdown_grace: 5s, retention: {max_jobs: 100000000}}
hooks:
  - id: burst
    signature: none
    concurrency: {mode: parallel, limit: 4}
    run: {shell: 'sleep 0.05; echo "\$HOOK_JOB_ID" >> done.txt', workdir: $WORK}
    response: {mode: async}
EOF
check_config_and_files

mapfile -t KILL_POINTS < <("$PY" "$CLIENT_LIB" plan --seed "$SEED" --rounds "$ROUNDS" --burst "$BURST")

echo "crash test: $ROUNDS rounds of $BURST async POSTs, $CONC in flight, seed $SEED" \
     "(replay: CRASH_SEED=$SEED bash bench/crash.sh $ROUNDS $BURST)"
echo "work dir: $WORK"

# Starts the server on a free port (up to 3 ports) and waits for /readyz. Sets SERVER_PID and
# PORT; returns 1 if it never got ready.
start_server() { # LOG
    local log=$1 try rc
    for try in 1 2 3; do
        PORT=$("$PY" "$CLIENT_LIB" freeport)
        RUST_LOG=$HR_LOG "$BIN" serve --config "$WORK/hooks.yaml" --listen "127.0.0.1:$PORT" \
            >>"$log" 2>&1 </dev/null &
        SERVER_PID=$!
        # No "Killed" job notice from bash for it; wait_gone watches /proc instead of the job.
        disown "$SERVER_PID"
        rc=0
        client wait "http://127.0.0.1:$PORT/readyz" --pid "$SERVER_PID" --timeout 30 || rc=$?
        if [[ $rc == 0 ]]; then
            return 0
        fi
        echo "  server (pid $SERVER_PID, port $PORT) did not get ready (try $try/3); its log ends:" >&2
        tail -n 5 "$log" | sed 's/^/    /' >&2
        kill_server
    done
    return 1
}

START=$(date +%s.%N)
aborted=0
for ((round = 1; round <= ROUNDS; round++)); do
    kill_after=${KILL_POINTS[round - 1]}
    echo "round $round/$ROUNDS: kill after 202 #$kill_after"

    if ! start_server "$WORK/server-$(printf %02d "$round")-burst.log"; then
        fail_round "$round" "the server did not get ready before the burst"
        aborted=1
        break
    fi
    burst_pid=$SERVER_PID
    client burst "http://127.0.0.1:$PORT/hooks/burst" --pid "$burst_pid" --n "$BURST" \
        --conc "$CONC" --kill-after "$kill_after" --ids-out "$IDS" --round "$round" \
        --results "$RESULTS" || fail_round "$round" "the burst client failed"
    # crash.py sent the SIGKILL; make sure, and wait until the process is gone.
    kill_server

    if ! start_server "$WORK/server-$(printf %02d "$round")-check.log"; then
        fail_round "$round" "the server did not get ready after the crash"
        aborted=1
        break
    fi
    client check "http://127.0.0.1:$PORT" --ids "$IDS" --done "$DONE" --round "$round" \
        --results "$RESULTS" --deadline "$DEADLINE" || fail_round "$round" "the check client failed"
    kill_server
done
END=$(date +%s.%N)

if [[ $aborted == 1 ]]; then
    echo "stopped after round $round: the server would not start on the state dir" >&2
fi
echo
echo "seed $SEED, $ROUNDS rounds x $BURST requests, $(awk -v a="$START" -v b="$END" 'BEGIN {printf "%.1f", b - a}') s"
rc=0
"$PY" "$CLIENT_LIB" report --results "$RESULTS" --rounds "$ROUNDS" || rc=$?
exit "$rc"

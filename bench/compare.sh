#!/usr/bin/env bash
# bench/compare.sh — hookrunner against adnanh/webhook, side by side, on this machine.
#
# Run from the repository root, as root (it apt-get installs what is missing):
#     bash bench/compare.sh                      # full run: 10 s per wrk run, 2 rounds (~6 min)
#     BENCH_QUICK=1 bash bench/compare.sh        # smoke run: 2 s per run, 1 round, small N (~2 min)
#     BENCH_JOBS=1000000 bash bench/compare.sh   # also measure with 1,000,000 stored jobs
#
# What it does
#   * Installs what is missing with apt-get (wrk, webhook, sqlite3, curl, python3), builds
#     hookrunner (`cargo build --release`, retried while the tree does not build) and
#     bench/spawnloop (its own cargo project).
#   * Starts both servers on 127.0.0.1 (free ports) with equivalent configs: one hook `push`,
#     GitHub HMAC-SHA256 signature (secret bench-secret), rule payload.ref == refs/heads/main, run
#     /bin/true with COMMIT=payload.after. All traffic goes to 127.0.0.1 only, and every load is
#     bounded in time (wrk -d) or in count (N requests, with a timeout).
#   * Measures, alternating hookrunner (A) and webhook (B) — A B A B, BENCH_ROUNDS rounds, median:
#       1. req/s answering a bad signature (wrk, POST, same ~1 KiB JSON body for both); for
#          hookrunner also over TLS, on a `tls:` listener of the same server (a self-signed
#          certificate made with openssl; wrk keeps its connections open, so this measures
#          requests, not handshakes);
#       2. req/s and p99 for a signed push that passes the rule, runs /bin/true and waits for its
#          exit status (hookrunner `response: {mode: wait}`; webhook
#          `include-command-output-in-response: true`), BENCH_CONN_WAIT connections;
#       3. async accept-to-completion: N signed pushes sent as fast as possible over
#          BENCH_ASYNC_CONC keep-alive connections (bench/lib/benchtool.py async); the command is
#          `/bin/sh -c 'echo x >> FILE'` for both; the clock stops when FILE has N lines (and, for
#          hookrunner, also when N jobs are `succeeded` in its SQLite store);
#       4. RSS: VmRSS 1 s after healthy (idle) and VmHWM after the load (peak), from /proc/PID/status;
#          time from exec to the first 200 on the health URL (hookrunner /healthz, webhook /),
#          median of BENCH_STARTS starts each.
#   * Paths 2 and 3 also for hookrunner on PostgreSQL, with 1 instance and with 3 (the requests
#     spread over them), and with BENCH_BASELINE for an older hookrunner on SQLite, in the same
#     rounds (bench/lib/compare_pg.sh says how).
#   * 5. The machine's limit for path 2: bench/spawnloop spawns /bin/true (piped stdout/stderr,
#     own process group, cleared env — as hookrunner spawns) and waits, one loop per core.
#   * 6. How cost grows (hookrunner; webhook alongside where it has an equivalent), one run each:
#       a. HMAC over bodies of 1 KiB, 64 KiB, 1 MiB, 10 MiB, measured THROUGH THE SERVER: bad-signature
#          requests with those bodies (wrk), MiB/s = req/s x body size;
#       b. configs of 10, 100, 1000, 10000 hooks: `hookrunner check` time (median of 3), start
#          to healthy, and bad-signature req/s against the last hook;
#       c. 0 .. BENCH_JOBS stored jobs: the jobs table is filled directly with sqlite3 (a recursive
#          CTE cloning one real job row, status succeeded), then hookrunner is restarted and the
#          signed-push (wait) latency and `GET /jobs?limit=50` latency are measured with one
#          connection.
#   * 7. Memory (hookrunner): VmRSS 1 s after healthy with the one-hook config and with
#     BENCH_MEMORY_HOOKS realistic hooks (bench/lib/gen_config.py valid: a `when` with a regex
#     distinct per hook, a templated command and env), and the peak RSS of `check` on the latter
#     (median of 3, from getrusage); the cost per hook is the difference over the hook count.
#     `BENCH_ONLY=memory` runs it alone in seconds.
#   * 8. The request log (issue 16; `BENCH_ONLY=log`): bad-signature req/s, as path 1, for
#     hookrunner in its default configuration (no RUST_LOG: an info line per request, its stderr
#     appended to a file as a journal would take it) and with RUST_LOG=warn, each at 16 and at 32
#     connections, against webhook at the same connections; BENCH_ROUNDS rounds A A B, median.
#   * 9. A flood (issue 16; `BENCH_ONLY=flood`): one address sends signed pushes at BENCH_FLOOD_RATE
#     req/s for BENCH_SECONDS (bench/lib/benchtool.py rate: a fixed-rate sender, since Debian's
#     wrk has no -R) to a server with `rate_limit: {per_ip: BENCH_FLOOD_LIMIT/s}`; the same
#     requests at the same rate go to a server without a limit, where every one is accepted (202,
#     async hook running /bin/true); and to a server whose limit lets one through (per_ip 1/h,
#     burst 1: the cost of the 429s alone). The server's own CPU (utime+stime from
#     /proc/PID/stat, its commands excluded) from the first request until every accepted job is
#     `succeeded`, each flood's as a percentage of the accepted run's; BENCH_ROUNDS rounds, median.
#   * Prints the tables and writes bench/results/latest.md (with the machine and the versions).
#
# Settings (environment)
#   BENCH_SECONDS      seconds per wrk run of paths 1-2 and of spawnloop   (10; quick: 2)
#   BENCH_SCALE_SECONDS seconds per wrk run in the scaling steps (6a-6c)   (BENCH_SECONDS/2, min 2)
#   BENCH_ROUNDS       rounds of A B for paths 1-4                          (2;  quick: 1)
#   BENCH_ASYNC_N      requests in path 3                                   (2000; quick: 300)
#   BENCH_JOBS         largest stored-job count in 6c                       (100000; quick: 10000)
#   BENCH_STARTS       starts per server for the start-up time              (5;  quick: 3)
#   BENCH_MEMORY_HOOKS hooks in the large config of step 7                  (10000)
#   BENCH_CONN_BAD     wrk connections for path 1 and 6a/6b                 (32)
#   BENCH_CONN_WAIT    wrk connections for path 2                           (16)
#   BENCH_ASYNC_CONC   client connections for path 3                        (16)
#   BENCH_FLOOD_RATE   req/s sent in step 9                                  (2000; quick: 1000)
#   BENCH_FLOOD_LIMIT  the server's per_ip limit in step 9, per second       (BENCH_FLOOD_RATE/10)
#   BENCH_QUICK=1      smoke run with the quick defaults above
#   BENCH_SKIP_BUILD=1 use target/release/hookrunner as it is
#   BENCH_HR_LOG       RUST_LOG for hookrunner                              (warn: webhook runs
#                      without -verbose, which discards its log, so both log next to nothing)
#   BENCH_KEEP=1       keep the work directory (/tmp/hookrunner-bench.*) for inspection
#   BENCH_OUT          report path                                          (bench/results/latest.md)
#   BENCH_ONLY         run only these steps, comma-separated: spawnloop,startup,paths,bodies,
#                      hooks,jobs,memory,log,flood (the report shows n/a for the others)
#   BENCH_REPORT_FROM=DIR  only re-render the report from a kept work directory's raw.tsv
#   BENCH_PG=0         leave out the PostgreSQL rows (on by default: a throwaway server from
#                      tests/postgres/server.sh, postgresql installed with apt-get if missing)
#   BENCH_BASELINE=BIN also measure paths 2 and 3 for another hookrunner binary on SQLite, e.g. a
#                      release build of the previous version, to show its numbers unchanged
#
# Every server it starts is stopped at exit (trap), whatever the exit.

set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH_DIR/.." && pwd)"
TOOL=(python3 "$BENCH_DIR/lib/benchtool.py")
LUA="$BENCH_DIR/lib/request.lua"
# shellcheck source=bench/lib/compare_pg.sh
source "$BENCH_DIR/lib/compare_pg.sh"

QUICK="${BENCH_QUICK:-0}"
if [[ "$QUICK" == 1 ]]; then
    RUN_SECONDS="${BENCH_SECONDS:-2}"
    ROUNDS="${BENCH_ROUNDS:-1}"
    ASYNC_N="${BENCH_ASYNC_N:-300}"
    MAX_JOBS="${BENCH_JOBS:-10000}"
    STARTS="${BENCH_STARTS:-3}"
else
    RUN_SECONDS="${BENCH_SECONDS:-10}"
    ROUNDS="${BENCH_ROUNDS:-2}"
    ASYNC_N="${BENCH_ASYNC_N:-2000}"
    MAX_JOBS="${BENCH_JOBS:-100000}"
    STARTS="${BENCH_STARTS:-5}"
fi
half=$((RUN_SECONDS / 2))
SCALE_SECONDS="${BENCH_SCALE_SECONDS:-$((half < 2 ? 2 : half))}"
CONN_BAD="${BENCH_CONN_BAD:-32}"
CONN_WAIT="${BENCH_CONN_WAIT:-16}"
ASYNC_CONC="${BENCH_ASYNC_CONC:-16}"
MEMORY_HOOKS="${BENCH_MEMORY_HOOKS:-10000}"
if [[ "$QUICK" == 1 ]]; then FLOOD_RATE="${BENCH_FLOOD_RATE:-1000}"; else FLOOD_RATE="${BENCH_FLOOD_RATE:-2000}"; fi
FLOOD_LIMIT="${BENCH_FLOOD_LIMIT:-$((FLOOD_RATE / 10))}"
LOG_CONNS=(16 32)
HR_LOG="${BENCH_HR_LOG:-warn}"
OUT="${BENCH_OUT:-$BENCH_DIR/results/latest.md}"
NPROC="$(nproc)"
WRK_THREADS="$NPROC"
HOOK_COUNTS=(10 100 1000 10000)
BODY_SIZES=(1024 65536 1048576 10485760)
JOB_LEVELS=(0)
for level in 1000 10000 100000 1000000; do
    ((level < MAX_JOBS)) && JOB_LEVELS+=("$level")
done
((MAX_JOBS > 0)) && JOB_LEVELS+=("$MAX_JOBS")

SECRET=bench-secret
# GH_SECRET: the secret bench/lib/gen_config.py's hooks name.
export BENCH_SECRET="$SECRET" BENCH_ADMIN_TOKEN=bench-token GH_SECRET="$SECRET"

# want STEP: whether BENCH_ONLY (comma-separated; default all) names STEP.
want() { [[ -z "${BENCH_ONLY:-}" || ",$BENCH_ONLY," == *",$1,"* ]]; }

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# --- install and build ---------------------------------------------------------------------------

install_missing() {
    local -A pkg_of=([wrk]=wrk [webhook]=webhook [sqlite3]=sqlite3 [curl]=curl [python3]=python3)
    local missing=() cmd
    for cmd in "${!pkg_of[@]}"; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkg_of[$cmd]}")
    done
    if ((${#missing[@]})); then
        log "installing with apt-get: ${missing[*]}"
        [[ "$(id -u)" == 0 ]] || die "need root to apt-get install ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    command -v cargo >/dev/null 2>&1 || die "cargo is needed (the Rust toolchain)"
}

build() {
    HR="$REPO/target/release/hookrunner"
    if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
        local attempt
        for attempt in 1 2 3; do
            log "cargo build --release (attempt $attempt)"
            if (cd "$REPO" && cargo build --release --quiet); then
                break
            fi
            if ((attempt == 3)); then
                [[ -x "$HR" ]] || die "hookrunner does not build"
                log "hookrunner does not build now; using the existing $HR"
            else
                log "build failed (the tree may be mid-edit); retrying in 60 s"
                sleep 60
            fi
        done
    fi
    [[ -x "$HR" ]] || die "no $HR"
    SPAWNLOOP="$BENCH_DIR/spawnloop/target/release/spawnloop"
    if want spawnloop; then
        log "building bench/spawnloop"
        (cd "$BENCH_DIR/spawnloop" && cargo build --release --quiet)
    fi
}

# --- servers -------------------------------------------------------------------------------------

PIDS=()
WORK=""
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    pg_rows_cleanup
    if [[ -n "$WORK" && -d "$WORK" ]]; then
        if [[ "${BENCH_KEEP:-0}" == 1 ]]; then
            log "work directory kept: $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { "${TOOL[@]}" freeport 1; }

# start_hr CONFIG STATE_DIR PORT [SERVE_OPTION...]: starts hookrunner (HR_SERVE, when set, is
# the binary to start instead of $HR; HR_LOG_FILE, when set, takes its stdout and stderr instead
# of $WORK/hookrunner.log), waits for /healthz; sets SRV_PID.
start_hr() {
    local config=$1 state=$2 port=$3
    shift 3
    mkdir -p "$state"
    # HR_LOG=default: no RUST_LOG at all, hookrunner's own default (an info line per request).
    local log_env=(env RUST_LOG="$HR_LOG")
    [[ "$HR_LOG" == default ]] && log_env=(env -u RUST_LOG)
    "${log_env[@]}" "${HR_SERVE:-$HR}" serve --config "$config" --listen "127.0.0.1:$port" \
        --state-dir "$state" "$@" </dev/null >>"${HR_LOG_FILE:-$WORK/hookrunner.log}" 2>&1 &
    SRV_PID=$!
    PIDS+=("$SRV_PID")
    "${TOOL[@]}" wait "http://127.0.0.1:$port/healthz" --timeout 120 ||
        { tail -20 "$WORK/hookrunner.log" >&2; die "hookrunner did not become healthy"; }
}

# start_wh HOOKS_JSON PORT: starts webhook, waits for GET / (it has no health URL); sets SRV_PID.
start_wh() {
    local hooks=$1 port=$2
    webhook -hooks "$hooks" -ip 127.0.0.1 -port "$port" </dev/null >>"$WORK/webhook.log" 2>&1 &
    SRV_PID=$!
    PIDS+=("$SRV_PID")
    "${TOOL[@]}" wait "http://127.0.0.1:$port/" --timeout 60 ||
        { tail -20 "$WORK/webhook.log" >&2; die "webhook did not start"; }
}

stop_srv() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local keep=() p
    for p in "${PIDS[@]}"; do [[ "$p" == "$pid" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

proc_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

# cpu_ticks PID: "OWN CHILDREN" CPU time of PID in clock ticks, from /proc/PID/stat: its own
# user+system time, and that of the children it has reaped (the commands it ran).
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13, $14 + $15}'; }
CLK_TCK=$(getconf CLK_TCK)
# cpu_per_request KEY PID BEFORE REQUESTS: records KEY_own and KEY_cmd, microseconds per request.
cpu_per_request() {
    local key=$1 pid=$2 before=$3 requests=$4 after
    after=$(cpu_ticks "$pid")
    ((requests > 0)) || return 0
    read -r own0 cmd0 <<<"$before"
    read -r own1 cmd1 <<<"$after"
    record "${key}_own" "$(awk -v t=$((own1 - own0)) -v n="$requests" -v hz="$CLK_TCK" 'BEGIN {printf "%.1f", t * 1e6 / hz / n}')"
    record "${key}_cmd" "$(awk -v t=$((cmd1 - cmd0)) -v n="$requests" -v hz="$CLK_TCK" 'BEGIN {printf "%.1f", t * 1e6 / hz / n}')"
}

# --- configs -------------------------------------------------------------------------------------

# hr_config FILE MODE COMMAND_JSON [NHOOKS]: hooks `push` (one) or `push-0`..`push-N-1`.
hr_config() {
    local file=$1 mode=$2 command=$3 n=${4:-1}
    cat >"$file" <<EOF
server:
  max_jobs: 64
  max_pending: 100000
  max_body: 16MiB
  admin_token: env:BENCH_ADMIN_TOKEN
  shutdown_grace: 5s
  retention: {max_jobs: 100000000, max_age: 3650d}
hooks:
EOF
    awk -v n="$n" -v mode="$mode" -v command="$command" 'BEGIN {
        for (i = 0; i < n; i++) {
            id = (n > 1) ? "push-" i : "push"
            print "  - id: " id
            print "    signature: {github: {secret: env:BENCH_SECRET}}"
            print "    when: {payload.ref: refs/heads/main}"
            print "    concurrency: {mode: parallel}"
            print "    run:"
            print "      command: " command
            print "      env: {COMMIT: \"{{ payload.after }}\"}"
            print "    response: {mode: " mode "}"
        }
    }' >>"$file"
}

# wh_config FILE WAIT(true|false) COMMAND ARGS_JSON [NHOOKS]
wh_config() {
    local file=$1 wait=$2 command=$3 args=$4 n=${5:-1}
    awk -v n="$n" -v wait="$wait" -v command="$command" -v args="$args" -v secret="$SECRET" 'BEGIN {
        print "["
        for (i = 0; i < n; i++) {
            id = (n > 1) ? "push-" i : "push"
            print "  {"
            print "    \"id\": \"" id "\","
            print "    \"execute-command\": \"" command "\","
            print "    \"pass-arguments-to-command\": " args ","
            print "    \"include-command-output-in-response\": " wait ","
            print "    \"pass-environment-to-command\": [{\"source\": \"payload\", \"name\": \"after\", \"envname\": \"COMMIT\"}],"
            print "    \"trigger-rule\": {\"and\": ["
            print "      {\"match\": {\"type\": \"payload-hmac-sha256\", \"secret\": \"" secret "\","
            print "                 \"parameter\": {\"source\": \"header\", \"name\": \"X-Hub-Signature-256\"}}},"
            print "      {\"match\": {\"type\": \"value\", \"value\": \"refs/heads/main\","
            print "                 \"parameter\": {\"source\": \"payload\", \"name\": \"ref\"}}}"
            print "    ]}"
            print "  }" ((i < n - 1) ? "," : "")
        }
        print "]"
    }' >"$file"
}

# --- measurement helpers -------------------------------------------------------------------------

RAW=""
record() { printf '%s\t%s\n' "$1" "$2" >>"$RAW"; }
# med KEY: median of the values recorded under KEY ("n/a" when none).
med() {
    awk -F'\t' -v k="$1" '$1 == k && $2 != "" {print $2}' "$RAW" | sort -g |
        awk '{a[NR] = $1} END {
            if (NR == 0) print "n/a";
            else if (NR % 2) print a[(NR + 1) / 2];
            else printf "%.6g\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
samples() { awk -F'\t' -v k="$1" '$1 == k {printf "%s%s", sep, $2; sep = ", "}' "$RAW"; }
# fmt DECIMALS VALUE [DIVISOR]
fmt() {
    local d=$1 v=$2 div=${3:-1}
    [[ "$v" == n/a || -z "$v" ]] && { echo "n/a"; return; }
    awk -v v="$v" -v d="$d" -v q="$div" 'BEGIN {printf "%.*f\n", d, v / q}'
}
ratio() {
    [[ "$1" == n/a || "$2" == n/a ]] && { echo "n/a"; return; }
    awk -v a="$1" -v b="$2" 'BEGIN {if (b == 0) print "n/a"; else printf "%.2f\n", a / b}'
}

WRK_N=0
# run_wrk LABEL URL CONNS SECONDS THREADS METHOD BODY_FILE HEADERS: fills the array W.
declare -A W
run_wrk() {
    local label=$1 url=$2 conns=$3 secs=$4 threads=$5 method=$6 body=$7 headers=$8
    WRK_N=$((WRK_N + 1))
    local out="$WORK/wrk-$WRK_N-$label.txt" line kv
    ((conns < threads)) && threads=$conns
    BENCH_METHOD="$method" BENCH_BODY_FILE="$body" BENCH_HEADERS="$headers" \
        wrk -t"$threads" -c"$conns" -d"${secs}s" --timeout 10s -s "$LUA" "$url" >"$out" 2>&1 ||
        { cat "$out" >&2; die "wrk failed ($label)"; }
    line=$(grep '^WRK_RESULT' "$out") || { cat "$out" >&2; die "no result from wrk ($label)"; }
    W=()
    for kv in ${line#WRK_RESULT }; do W[${kv%%=*}]=${kv#*=}; done
    local errors=$((W[connect_err] + W[read_err] + W[write_err] + W[timeout_err]))
    W[socket_errors]=$errors
    log "  $label: ${W[rps]} req/s, p50 $(fmt 2 "${W[p50_us]}" 1000) ms, p99 $(fmt 2 "${W[p99_us]}" 1000) ms, non-2xx ${W[non2xx]}, socket errors $errors"
}

# expect_status LABEL URL WANT METHOD BODY_FILE HEADERS [GREP]: one request with curl first, so
# a measurement never counts the wrong answer.
expect_status() {
    local label=$1 url=$2 want=$3 method=$4 body=$5 headers=$6 pattern=${7:-}
    # --cacert: the bench's self-signed certificate, for the TLS listener.
    local args=(-s -o "$WORK/expect.out" -w '%{http_code}' -X "$method" --max-time 30 --cacert "$WORK/tls.pem") h code
    IFS='|' read -ra hs <<<"$headers"
    for h in "${hs[@]}"; do args+=(-H "$h"); done
    [[ -n "$body" ]] && args+=(--data-binary "@$body")
    code=$(curl "${args[@]}" "$url") || true
    if [[ "$code" != "$want" ]]; then
        head -c 400 "$WORK/expect.out" >&2 || true
        die "$label: expected HTTP $want, got $code"
    fi
    if [[ -n "$pattern" ]] && ! grep -q -- "$pattern" "$WORK/expect.out"; then
        head -c 400 "$WORK/expect.out" >&2
        die "$label: answer lacks $pattern"
    fi
}

# --- main ----------------------------------------------------------------------------------------

main() {
    cd "$REPO"
    if [[ -n "${BENCH_REPORT_FROM:-}" ]]; then
        # Re-render the report from a kept work directory (same BENCH_* settings as its run).
        HR="$REPO/target/release/hookrunner"
        RAW="$BENCH_REPORT_FROM/raw.tsv"
        [[ -f "$RAW" ]] || die "no $RAW"
        report "$(cat "$BENCH_REPORT_FROM/load" 2>/dev/null || echo '?')" "?"
        return
    fi
    install_missing
    build
    WORK="$(mktemp -d /tmp/hookrunner-bench.XXXXXX)"
    RAW="$WORK/raw.tsv"
    : >"$RAW"
    local t_begin
    t_begin=$(date +%s)
    local load_at_start
    load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)
    echo "$load_at_start" >"$WORK/load"
    log "work directory $WORK; ${RUN_SECONDS}s per run, $ROUNDS round(s), N=$ASYNC_N, jobs up to $MAX_JOBS; load average $load_at_start"

    # Bodies and headers.
    "${TOOL[@]}" body 1024 "$WORK/body.json"
    local size
    for size in "${BODY_SIZES[@]}"; do "${TOOL[@]}" body "$size" "$WORK/body-$size.json"; done
    local sig
    sig=$("$HR" sign --provider github --secret "$SECRET" --data "@$WORK/body.json" |
        sed -n 's/^X-Hub-Signature-256: *//p')
    [[ "$sig" == sha256=* ]] || die "hookrunner sign printed no X-Hub-Signature-256"
    local expect_sig
    expect_sig="sha256=$(openssl dgst -sha256 -hmac "$SECRET" <"$WORK/body.json" 2>/dev/null | awk '{print $NF}')" || true
    [[ "$expect_sig" == "sha256=" || "$expect_sig" == "$sig" ]] || die "hookrunner sign disagrees with openssl"
    local base="Content-Type: application/json|X-GitHub-Event: push"
    GOOD="$base|X-Hub-Signature-256: $sig"
    BAD="$base|X-Hub-Signature-256: sha256=$(printf '0%.0s' $(seq 64))"

    local true_cmd='["/bin/true"]'
    hr_config "$WORK/hr-wait.yaml" wait "$true_cmd"
    # The same config with a certificate, for the TLS row of path 1.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 \
        -keyout "$WORK/tls.key" -out "$WORK/tls.pem" 2>/dev/null || die "openssl cannot make the TLS certificate"
    sed "s|^server:$|server:\n  tls: {cert: $WORK/tls.pem, key: $WORK/tls.key}|" "$WORK/hr-wait.yaml" >"$WORK/hr-wait-tls.yaml"
    "$HR" check --config "$WORK/hr-wait-tls.yaml" >/dev/null || die "hookrunner check refused the bench config with TLS"
    wh_config "$WORK/wh-wait.json" true /bin/true '[]'
    "$HR" check --config "$WORK/hr-wait.yaml" >/dev/null || die "hookrunner check refused the bench config"

    want paths && pg_rows_setup
    want spawnloop && step_spawnloop
    want startup && step_startup
    want paths && step_rounds
    want bodies && step_bodies
    want hooks && step_hooks
    want jobs && step_jobs
    want memory && step_memory
    want log && step_log
    want flood && step_flood

    local t_end
    t_end=$(date +%s)
    report "$load_at_start" "$((t_end - t_begin))"
}

# mem_per_hook KIB IDLE_KIB: KiB per hook above the idle figure, or n/a.
mem_per_hook() {
    [[ "$1" == n/a || "$2" == n/a ]] && { echo n/a; return; }
    awk -v a="$1" -v b="$2" -v n="$MEMORY_HOOKS" 'BEGIN {printf "%.2f", (a - b) / n}'
}

# --- steps (called from main; they see main's locals) ---------------------------------------

step_spawnloop() {
    # 5. spawnloop: the machine's limit for path 2.
    # One loop per core, as asked; and as many loops as path 2 has connections, since a loop
    # waiting for its child leaves its core idle while the child runs.
    log "spawnloop: ${RUN_SECONDS}s on $NPROC and on $CONN_WAIT threads, $ROUNDS time(s)"
    local r line
    for ((r = 1; r <= ROUNDS; r++)); do
        line=$("$SPAWNLOOP" --seconds "$RUN_SECONDS" --threads "$NPROC")
        log "  $line"
        record spawnloop "${line##*spawns_per_sec=}"
        line=$("$SPAWNLOOP" --seconds "$RUN_SECONDS" --threads "$CONN_WAIT")
        log "  $line"
        record spawnloop_conc "${line##*spawns_per_sec=}"
    done
}

step_startup() {
    # 4b. Start to healthy, alternating.
    log "start to healthy: $STARTS starts each, alternating"
    mkdir -p "$WORK/state-startup"
    start_hr "$WORK/hr-wait.yaml" "$WORK/state-startup" "$(free_port)"   # creates the store once
    stop_srv "$SRV_PID"
    local port ms
    for ((r = 1; r <= STARTS; r++)); do
        port=$(free_port)
        ms=$(RUST_LOG="$HR_LOG" "${TOOL[@]}" startup "http://127.0.0.1:$port/healthz" -- \
            "$HR" serve --config "$WORK/hr-wait.yaml" --listen "127.0.0.1:$port" --state-dir "$WORK/state-startup")
        record startup_hr "${ms#STARTUP_MS }"
        port=$(free_port)
        ms=$("${TOOL[@]}" startup "http://127.0.0.1:$port/" -- \
            webhook -hooks "$WORK/wh-wait.json" -ip 127.0.0.1 -port "$port")
        record startup_wh "${ms#STARTUP_MS }"
    done
    log "  hookrunner $(samples startup_hr) ms; webhook $(samples startup_wh) ms"
}

step_rounds() {
    # 1-4. Rounds.
    local hr_port hr_tls_port wh_port hr_pid wh_pid
    for ((r = 1; r <= ROUNDS; r++)); do
        log "round $r/$ROUNDS: paths 1 and 2"
        hr_port=$(free_port); hr_tls_port=$(free_port); wh_port=$(free_port)
        rm -rf "$WORK/state-wait"
        start_hr "$WORK/hr-wait-tls.yaml" "$WORK/state-wait" "$hr_port" --listen "tls:127.0.0.1:$hr_tls_port"
        hr_pid=$SRV_PID
        start_wh "$WORK/wh-wait.json" "$wh_port"; wh_pid=$SRV_PID
        sleep 1
        record rss_idle_hr "$(proc_kb "$hr_pid" VmRSS)"
        record rss_idle_wh "$(proc_kb "$wh_pid" VmRSS)"
        local hr_url="http://127.0.0.1:$hr_port/hooks/push" wh_url="http://127.0.0.1:$wh_port/hooks/push"
        local hr_tls_url="https://127.0.0.1:$hr_tls_port/hooks/push"
        expect_status "hookrunner bad signature" "$hr_url" 401 POST "$WORK/body.json" "$BAD"
        expect_status "hookrunner bad signature over TLS" "$hr_tls_url" 401 POST "$WORK/body.json" "$BAD"
        expect_status "webhook bad signature" "$wh_url" 500 POST "$WORK/body.json" "$BAD"
        expect_status "hookrunner signed push" "$hr_url" 200 POST "$WORK/body.json" "$GOOD" '"succeeded"'
        expect_status "webhook signed push" "$wh_url" 200 POST "$WORK/body.json" "$GOOD"

        run_wrk "bad-hr" "$hr_url" "$CONN_BAD" "$RUN_SECONDS" "$WRK_THREADS" POST "$WORK/body.json" "$BAD"
        record bad_rps_hr "${W[rps]}"; record bad_sockerr_hr "${W[socket_errors]}"
        run_wrk "bad-hr-tls" "$hr_tls_url" "$CONN_BAD" "$RUN_SECONDS" "$WRK_THREADS" POST "$WORK/body.json" "$BAD"
        record bad_rps_hr_tls "${W[rps]}"; record bad_sockerr_hr_tls "${W[socket_errors]}"
        run_wrk "bad-wh" "$wh_url" "$CONN_BAD" "$RUN_SECONDS" "$WRK_THREADS" POST "$WORK/body.json" "$BAD"
        record bad_rps_wh "${W[rps]}"; record bad_sockerr_wh "${W[socket_errors]}"

        local ticks
        ticks=$(cpu_ticks "$hr_pid")
        run_wrk "wait-hr" "$hr_url" "$CONN_WAIT" "$RUN_SECONDS" "$WRK_THREADS" POST "$WORK/body.json" "$GOOD"
        record wait_rps_hr "${W[rps]}"; record wait_p99_hr "${W[p99_us]}"; record wait_p50_hr "${W[p50_us]}"
        record wait_non2xx_hr "${W[non2xx]}"; record wait_sockerr_hr "${W[socket_errors]}"
        cpu_per_request wait_cpu_hr "$hr_pid" "$ticks" "${W[requests]}"
        ticks=$(cpu_ticks "$wh_pid")
        run_wrk "wait-wh" "$wh_url" "$CONN_WAIT" "$RUN_SECONDS" "$WRK_THREADS" POST "$WORK/body.json" "$GOOD"
        record wait_rps_wh "${W[rps]}"; record wait_p99_wh "${W[p99_us]}"; record wait_p50_wh "${W[p50_us]}"
        record wait_non2xx_wh "${W[non2xx]}"; record wait_sockerr_wh "${W[socket_errors]}"
        cpu_per_request wait_cpu_wh "$wh_pid" "$ticks" "${W[requests]}"

        record rss_peak_wait_hr "$(proc_kb "$hr_pid" VmHWM)"
        record rss_peak_wait_wh "$(proc_kb "$wh_pid" VmHWM)"
        stop_srv "$hr_pid"; stop_srv "$wh_pid"
        extra_rows_wait "$r"

        log "round $r/$ROUNDS: path 3 (async, N=$ASYNC_N)"
        local hr_done="$WORK/done-hr-$r.txt" wh_done="$WORK/done-wh-$r.txt"
        : >"$hr_done"; : >"$wh_done"
        hr_config "$WORK/hr-async.yaml" async "[\"/bin/sh\", \"-c\", \"echo x >> $hr_done\"]"
        wh_config "$WORK/wh-async.json" false /bin/sh \
            "[{\"source\": \"string\", \"name\": \"-c\"}, {\"source\": \"string\", \"name\": \"echo x >> $wh_done\"}]"
        hr_port=$(free_port); wh_port=$(free_port)
        rm -rf "$WORK/state-async"
        start_hr "$WORK/hr-async.yaml" "$WORK/state-async" "$hr_port"; hr_pid=$SRV_PID
        start_wh "$WORK/wh-async.json" "$wh_port"; wh_pid=$SRV_PID
        local hdr=() h
        IFS='|' read -ra hs <<<"$GOOD"
        for h in "${hs[@]}"; do hdr+=(--header "$h"); done
        line=$("${TOOL[@]}" async "http://127.0.0.1:$hr_port/hooks/push" --body "$WORK/body.json" \
            "${hdr[@]}" --n "$ASYNC_N" --conc "$ASYNC_CONC" --done-file "$hr_done" \
            --db "$WORK/state-async/hookrunner.db" --timeout 300) || { echo "$line" >&2; die "hookrunner async run failed"; }
        log "  hookrunner: $line"
        declare -A A=()
        local kv
        for kv in ${line#ASYNC_RESULT }; do A[${kv%%=*}]=${kv#*=}; done
        record async_accept_s_hr "${A[accepted_s]}"; record async_ran_s_hr "${A[ran_s]}"
        record async_succ_s_hr "${A[succeeded_s]}"
        line=$("${TOOL[@]}" async "http://127.0.0.1:$wh_port/hooks/push" --body "$WORK/body.json" \
            "${hdr[@]}" --n "$ASYNC_N" --conc "$ASYNC_CONC" --done-file "$wh_done" --timeout 300) ||
            { echo "$line" >&2; die "webhook async run failed"; }
        log "  webhook:    $line"
        A=()
        for kv in ${line#ASYNC_RESULT }; do A[${kv%%=*}]=${kv#*=}; done
        record async_accept_s_wh "${A[accepted_s]}"; record async_ran_s_wh "${A[ran_s]}"
        record rss_peak_async_hr "$(proc_kb "$hr_pid" VmHWM)"
        record rss_peak_async_wh "$(proc_kb "$wh_pid" VmHWM)"
        stop_srv "$hr_pid"; stop_srv "$wh_pid"
        extra_rows_async "$r"
    done
}

step_bodies() {
    # 6a. HMAC cost by body size, through the servers.
    log "6a: bad-signature requests by body size, ${SCALE_SECONDS}s each"
    hr_port=$(free_port); wh_port=$(free_port)
    rm -rf "$WORK/state-wait"
    start_hr "$WORK/hr-wait.yaml" "$WORK/state-wait" "$hr_port"; hr_pid=$SRV_PID
    start_wh "$WORK/wh-wait.json" "$wh_port"; wh_pid=$SRV_PID
    local conns
    for size in "${BODY_SIZES[@]}"; do
        conns=$CONN_BAD; ((size >= 1048576)) && conns=$((NPROC * 2))
        expect_status "hookrunner bad signature, $size B" "http://127.0.0.1:$hr_port/hooks/push" 401 POST "$WORK/body-$size.json" "$BAD"
        expect_status "webhook bad signature, $size B" "http://127.0.0.1:$wh_port/hooks/push" 500 POST "$WORK/body-$size.json" "$BAD"
        run_wrk "size-$size-hr" "http://127.0.0.1:$hr_port/hooks/push" "$conns" "$SCALE_SECONDS" "$WRK_THREADS" POST "$WORK/body-$size.json" "$BAD"
        record "size_rps_hr_$size" "${W[rps]}"
        run_wrk "size-$size-wh" "http://127.0.0.1:$wh_port/hooks/push" "$conns" "$SCALE_SECONDS" "$WRK_THREADS" POST "$WORK/body-$size.json" "$BAD"
        record "size_rps_wh_$size" "${W[rps]}"
        record "size_conns_$size" "$conns"
    done
    record rss_peak_bodies_hr "$(proc_kb "$hr_pid" VmHWM)"
    record rss_peak_bodies_wh "$(proc_kb "$wh_pid" VmHWM)"
    stop_srv "$hr_pid"; stop_srv "$wh_pid"
}

step_hooks() {
    # 6b. Number of hooks.
    log "6b: configs of ${HOOK_COUNTS[*]} hooks"
    local n t0 t1 last
    # Every start below opens an existing store, as the start-up time of section 4 does.
    rm -rf "$WORK/state-n"
    start_hr "$WORK/hr-wait.yaml" "$WORK/state-n" "$(free_port)"
    stop_srv "$SRV_PID"
    for n in "${HOOK_COUNTS[@]}"; do
        hr_config "$WORK/hr-$n.yaml" wait "$true_cmd" "$n"
        wh_config "$WORK/wh-$n.json" true /bin/true '[]' "$n"
        for r in 1 2 3; do
            t0=$(date +%s%N)
            "$HR" check --config "$WORK/hr-$n.yaml" >/dev/null 2>"$WORK/check.err" ||
                { head "$WORK/check.err" >&2; die "check failed on $n hooks"; }
            t1=$(date +%s%N)
            record "check_ms_$n" "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", (b - a) / 1e6}')"
        done
        port=$(free_port)
        ms=$(RUST_LOG="$HR_LOG" "${TOOL[@]}" startup "http://127.0.0.1:$port/healthz" -- \
            "$HR" serve --config "$WORK/hr-$n.yaml" --listen "127.0.0.1:$port" --state-dir "$WORK/state-n")
        record "hooks_start_hr_$n" "${ms#STARTUP_MS }"
        port=$(free_port)
        ms=$("${TOOL[@]}" startup "http://127.0.0.1:$port/" -- webhook -hooks "$WORK/wh-$n.json" -ip 127.0.0.1 -port "$port")
        record "hooks_start_wh_$n" "${ms#STARTUP_MS }"
        last="push-$((n - 1))"
        hr_port=$(free_port); wh_port=$(free_port)
        start_hr "$WORK/hr-$n.yaml" "$WORK/state-n" "$hr_port"; hr_pid=$SRV_PID
        start_wh "$WORK/wh-$n.json" "$wh_port"; wh_pid=$SRV_PID
        expect_status "hookrunner $n hooks" "http://127.0.0.1:$hr_port/hooks/$last" 401 POST "$WORK/body.json" "$BAD"
        expect_status "webhook $n hooks" "http://127.0.0.1:$wh_port/hooks/$last" 500 POST "$WORK/body.json" "$BAD"
        run_wrk "hooks-$n-hr" "http://127.0.0.1:$hr_port/hooks/$last" "$CONN_BAD" "$SCALE_SECONDS" "$WRK_THREADS" POST "$WORK/body.json" "$BAD"
        record "hooks_rps_hr_$n" "${W[rps]}"
        run_wrk "hooks-$n-wh" "http://127.0.0.1:$wh_port/hooks/$last" "$CONN_BAD" "$SCALE_SECONDS" "$WRK_THREADS" POST "$WORK/body.json" "$BAD"
        record "hooks_rps_wh_$n" "${W[rps]}"
        record "hooks_rss_hr_$n" "$(proc_kb "$hr_pid" VmRSS)"
        record "hooks_rss_wh_$n" "$(proc_kb "$wh_pid" VmRSS)"
        stop_srv "$hr_pid"; stop_srv "$wh_pid"
    done
}

step_jobs() {
    # 6c. Stored jobs.
    log "6c: stored jobs ${JOB_LEVELS[*]}"
    local jobs state db cols sel fill_s
    for jobs in "${JOB_LEVELS[@]}"; do
        state="$WORK/state-jobs-$jobs"
        db="$state/hookrunner.db"
        rm -rf "$state"
        # One real job gives the schema and a row in the exact format the server writes.
        hr_port=$(free_port)
        start_hr "$WORK/hr-wait.yaml" "$state" "$hr_port"; hr_pid=$SRV_PID
        expect_status "hookrunner template job" "http://127.0.0.1:$hr_port/hooks/push" 200 POST "$WORK/body.json" "$GOOD" '"succeeded"'
        stop_srv "$hr_pid"
        [[ -f "$WORK/schema.sql" ]] || sqlite3 "$db" .schema >"$WORK/schema.sql"
        fill_s=0
        if ((jobs > 1)); then
            cols=$(sqlite3 "$db" "SELECT group_concat(name, ',') FROM pragma_table_info('jobs') WHERE name != 'seq'")
            # Every column is copied from the template row except these.
            sel=$(awk -v cols="$cols" -v total="$jobs" 'BEGIN {
                n = split(cols, c, ",")
                for (i = 1; i <= n; i++) {
                    e = "t." c[i]
                    if (c[i] == "id") e = "lower(hex(randomblob(16)))"
                    else if (c[i] == "request_id") e = "lower(hex(randomblob(16)))"
                    else if (c[i] == "status") e = "'"'"'succeeded'"'"'"
                    else if (c[i] == "dedupe_key") e = "NULL"
                    else if (c[i] ~ /_ms$/ && c[i] != "duration_ms") e = "t." c[i] " - (" total " - n.i) * 10"
                    printf "%s%s", (i > 1 ? ", " : ""), e
                }
            }')
            t0=$(date +%s%N)
            sqlite3 "$db" <<SQL
PRAGMA synchronous = OFF;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $((jobs - 1)))
INSERT INTO jobs ($cols)
SELECT $sel FROM n, (SELECT * FROM jobs ORDER BY seq LIMIT 1) AS t;
COMMIT;
SQL
            t1=$(date +%s%N)
            fill_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", (b - a) / 1e9}')
        fi
        local count
        count=$(sqlite3 "$db" "SELECT count(*) FROM jobs")
        record "jobs_count_$jobs" "$count"
        record "jobs_fill_s_$jobs" "$fill_s"
        record "jobs_db_mib_$jobs" "$(du -sk "$state" | awk '{printf "%.2f", $1 / 1024}')"
        log "  $jobs: $count rows, filled in ${fill_s}s"
        port=$(free_port)
        ms=$(RUST_LOG="$HR_LOG" "${TOOL[@]}" startup "http://127.0.0.1:$port/healthz" --timeout 300 -- \
            "$HR" serve --config "$WORK/hr-wait.yaml" --listen "127.0.0.1:$port" --state-dir "$state")
        record "jobs_start_$jobs" "${ms#STARTUP_MS }"
        [[ "$(sqlite3 "$db" "SELECT count(*) FROM jobs")" -ge "$count" ]] || die "jobs were pruned at start; raise retention"
        hr_port=$(free_port)
        start_hr "$WORK/hr-wait.yaml" "$state" "$hr_port"; hr_pid=$SRV_PID
        run_wrk "jobs-$jobs-trigger" "http://127.0.0.1:$hr_port/hooks/push" 1 "$SCALE_SECONDS" 1 POST "$WORK/body.json" "$GOOD"
        record "jobs_trig_p50_$jobs" "${W[p50_us]}"; record "jobs_trig_p99_$jobs" "${W[p99_us]}"
        record "jobs_trig_rps_$jobs" "${W[rps]}"
        local list_url="http://127.0.0.1:$hr_port/jobs?limit=50" auth="Authorization: Bearer $BENCH_ADMIN_TOKEN"
        expect_status "GET /jobs" "$list_url" 200 GET "" "$auth" '"jobs"'
        run_wrk "jobs-$jobs-list" "$list_url" 1 "$SCALE_SECONDS" 1 GET "" "$auth"
        record "jobs_list_p50_$jobs" "${W[p50_us]}"; record "jobs_list_p99_$jobs" "${W[p99_us]}"
        record "jobs_list_rps_$jobs" "${W[rps]}"
        record "jobs_rss_$jobs" "$(proc_kb "$hr_pid" VmHWM)"
        stop_srv "$hr_pid"
        rm -rf "$state"
    done
}

step_log() {
    # 8. The request log: bad-signature req/s with hookrunner's default log and with warn.
    local r conns mode hr_port wh_port pid url
    for ((r = 1; r <= ROUNDS; r++)); do
        log "8: round $r/$ROUNDS: bad signature, default log and warn, ${LOG_CONNS[*]} conns"
        for mode in default warn; do
            hr_port=$(free_port)
            rm -rf "$WORK/state-log"
            HR_LOG=$mode HR_LOG_FILE="$WORK/hr-stderr-$mode.log" \
                start_hr "$WORK/hr-wait.yaml" "$WORK/state-log" "$hr_port"; pid=$SRV_PID
            url="http://127.0.0.1:$hr_port/hooks/push"
            expect_status "hookrunner bad signature ($mode log)" "$url" 401 POST "$WORK/body.json" "$BAD"
            for conns in "${LOG_CONNS[@]}"; do
                local before after
                before=$(stat -c %s "$WORK/hr-stderr-$mode.log")
                run_wrk "log-$mode-$conns-hr" "$url" "$conns" "$RUN_SECONDS" "$WRK_THREADS" POST "$WORK/body.json" "$BAD"
                after=$(stat -c %s "$WORK/hr-stderr-$mode.log")
                record "log_rps_hr_${mode}_$conns" "${W[rps]}"
                record "log_bytes_${mode}_$conns" "$(awk -v b=$((after - before)) -v n="${W[requests]}" 'BEGIN {if (n > 0) printf "%.1f", b / n}')"
            done
            stop_srv "$pid"
        done
        wh_port=$(free_port)
        start_wh "$WORK/wh-wait.json" "$wh_port"; pid=$SRV_PID
        url="http://127.0.0.1:$wh_port/hooks/push"
        expect_status "webhook bad signature" "$url" 500 POST "$WORK/body.json" "$BAD"
        for conns in "${LOG_CONNS[@]}"; do
            run_wrk "log-$conns-wh" "$url" "$conns" "$RUN_SECONDS" "$WRK_THREADS" POST "$WORK/body.json" "$BAD"
            record "log_rps_wh_$conns" "${W[rps]}"
        done
        stop_srv "$pid"
    done
}

# flood_run LABEL CONFIG: sends FLOOD_RATE signed pushes a second for RUN_SECONDS to a fresh
# hookrunner on CONFIG, waits until every accepted job is `succeeded`, and records the server's
# own CPU seconds over that span (flood_cpu_LABEL), the 202s and the 429s.
flood_run() {
    local label=$1 config=$2 port state="$WORK/state-flood" pid ticks0 ticks1 line hdr=() h
    port=$(free_port)
    rm -rf "$state"
    start_hr "$config" "$state" "$port"; pid=$SRV_PID
    IFS='|' read -ra hs <<<"$GOOD"
    for h in "${hs[@]}"; do hdr+=(--header "$h"); done
    ticks0=$(cpu_ticks "$pid")
    line=$("${TOOL[@]}" rate "http://127.0.0.1:$port/hooks/push" --body "$WORK/body.json" "${hdr[@]}" \
        --rate "$FLOOD_RATE" --seconds "$RUN_SECONDS" --conc 32) || die "flood sender failed ($label)"
    log "  $label: $line"
    declare -A F=()
    local kv
    for kv in ${line#RATE_RESULT }; do F[${kv%%=*}]=${kv#*=}; done
    local done_count=-1
    for _ in $(seq 1200); do
        done_count=$(sqlite3 "$state/hookrunner.db" "SELECT count(*) FROM jobs WHERE status = 'succeeded'" 2>/dev/null || echo -1)
        ((done_count >= F[n202])) && break
        sleep 0.1
    done
    ((done_count >= F[n202])) || die "$label: only $done_count of ${F[n202]} accepted jobs succeeded"
    ticks1=$(cpu_ticks "$pid")
    local own0 own1 cmd0 cmd1
    read -r own0 cmd0 <<<"$ticks0"
    read -r own1 cmd1 <<<"$ticks1"
    record "flood_cpu_$label" "$(awk -v t=$((own1 - own0)) -v hz="$CLK_TCK" 'BEGIN {printf "%.2f", t / hz}')"
    record "flood_cmd_cpu_$label" "$(awk -v t=$((cmd1 - cmd0)) -v hz="$CLK_TCK" 'BEGIN {printf "%.2f", t / hz}')"
    record "flood_rps_$label" "${F[rps]}"
    record "flood_202_$label" "${F[n202]}"
    record "flood_429_$label" "${F[n429]}"
    record "flood_other_$label" "$((F[sent] - F[n202] - F[n429]))"
    record "flood_lag_$label" "${F[max_lag_s]}"
    stop_srv "$pid"
}

step_flood() {
    # 9. A flood of 10x the per-address limit against the same rate of accepted triggers.
    log "9: flood: $FLOOD_RATE req/s for ${RUN_SECONDS}s, limit per_ip ${FLOOD_LIMIT}/s, against accepted triggers"
    hr_config "$WORK/hr-flood-open.yaml" async '["/bin/true"]'
    sed "s|^server:$|server:\n  rate_limit: {per_ip: $FLOOD_LIMIT/s}|" "$WORK/hr-flood-open.yaml" >"$WORK/hr-flood-limited.yaml"
    # Refused: a limit that lets one request through, so the flood is all 429s: their own cost.
    sed "s|^server:$|server:\n  rate_limit: {per_ip: 1/h, burst: 1}|" "$WORK/hr-flood-open.yaml" >"$WORK/hr-flood-refused.yaml"
    "$HR" check --config "$WORK/hr-flood-limited.yaml" >/dev/null || die "hookrunner check refused the flood config"
    local r
    for ((r = 1; r <= ROUNDS; r++)); do
        flood_run accepted "$WORK/hr-flood-open.yaml"
        flood_run limited "$WORK/hr-flood-limited.yaml"
        flood_run refused "$WORK/hr-flood-refused.yaml"
        # This round's values (the last recorded of each key): the percentages, and the CPU per
        # request of an accepted trigger and of a 429 (from the refused run).
        awk -F'\t' '{v[$1] = $2} END {
            a = v["flood_cpu_accepted"]; na = v["flood_202_accepted"]; nr = v["flood_429_refused"]
            if (a > 0) printf "flood_pct\t%.1f\nflood_pct_refused\t%.1f\n", v["flood_cpu_limited"] * 100 / a, v["flood_cpu_refused"] * 100 / a
            if (na > 0) printf "flood_us_accepted\t%.1f\n", a * 1e6 / na
            if (nr > 0) printf "flood_us_429\t%.1f\n", v["flood_cpu_refused"] * 1e6 / nr
        }' "$RAW" >>"$RAW"
    done
    log "  flood CPU as % of accepted: $(samples flood_pct); all refused: $(samples flood_pct_refused); per 429 $(samples flood_us_429) µs, per accepted $(samples flood_us_accepted) µs"
}

# --- report --------------------------------------------------------------------------------------

step_memory() {
    # 7. Memory: idle with one hook, serving MEMORY_HOOKS realistic hooks, and `check` on them.
    local n=$MEMORY_HOOKS pid
    log "7: memory with 1 and $n hooks"
    rm -rf "$WORK/state-mem"
    start_hr "$WORK/hr-wait.yaml" "$WORK/state-mem" "$(free_port)"; pid=$SRV_PID
    sleep 1
    record mem_idle_1 "$(proc_kb "$pid" VmRSS)"
    stop_srv "$pid"
    python3 "$BENCH_DIR/lib/gen_config.py" valid "$n" >"$WORK/hr-mem.yaml"
    # The hooks run ./deploy.sh: present, so that loading warns about nothing, as a real config.
    printf '#!/bin/sh\n' >"$WORK/deploy.sh"; chmod +x "$WORK/deploy.sh"
    start_hr "$WORK/hr-mem.yaml" "$WORK/state-mem" "$(free_port)"; pid=$SRV_PID
    sleep 1
    record mem_serve_n "$(proc_kb "$pid" VmRSS)"
    record mem_serve_hwm_n "$(proc_kb "$pid" VmHWM)"
    stop_srv "$pid"
    for r in 1 2 3; do
        # The peak RSS of the child, in KiB (Linux's ru_maxrss unit).
        record mem_check_n "$(python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "$HR" check --config "$WORK/hr-mem.yaml")"
    done
    log "  idle $(samples mem_idle_1) KiB; $n hooks: serving $(samples mem_serve_n) KiB, check peak $(samples mem_check_n) KiB"
}

report() {
    local load_at_start=$1 took=$2
    mkdir -p "$(dirname "$OUT")"
    local hr_version wh_version wrk_version commit cpu kernel mem
    hr_version=$({ "$HR" --version 2>/dev/null || echo "hookrunner ?"; } | awk 'NR == 1')
    commit=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo "?")
    if [[ -n "$(cd "$REPO" && git status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
        commit="$commit (with uncommitted changes)"
    fi
    wh_version=$({ webhook -version 2>&1 || true; } | awk 'NR == 1')
    wh_version="$wh_version (Debian $(dpkg-query -W -f='${Version}' webhook 2>/dev/null || echo '?'))"
    wrk_version=$({ wrk -v 2>&1 || true; } | awk 'NR == 1 {print $1, $2}')
    cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
    kernel=$(uname -sr)
    mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)

    local sl hr2 wh2
    local slc
    sl=$(med spawnloop); slc=$(med spawnloop_conc); hr2=$(med wait_rps_hr); wh2=$(med wait_rps_wh)

    {
        echo "# hookrunner vs adnanh/webhook"
        echo
        echo "Written by \`bench/compare.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'); the run took ${took} s."
        echo
        echo "| machine | |"
        echo "|---|---|"
        echo "| cores (\`nproc\`) | $NPROC |"
        echo "| CPU | $cpu |"
        echo "| memory | $mem |"
        echo "| kernel | $kernel |"
        echo "| load average at start (1/5/15 min) | $load_at_start |"
        echo "| hookrunner | $hr_version, commit $commit, \`cargo build --release\`, RUST_LOG=$HR_LOG |"
        echo "| webhook | $wh_version, without -verbose (log discarded) |"
        [[ "$(med wait_rps_pg1)" != n/a ]] && echo "| PostgreSQL | $(pg_version), on the same machine, its defaults (fsync on), max_connections=200 |"
        baseline_wanted && echo "| baseline | \`$BENCH_BASELINE\`, $("$BENCH_BASELINE" --version 2>/dev/null | awk 'NR == 1') |"
        echo "| load generator | $wrk_version, $WRK_THREADS threads, on the same cores as the servers |"
        echo "| settings | ${RUN_SECONDS} s per run, ${ROUNDS} round(s) A B (median), N=$ASYNC_N, scaling runs ${SCALE_SECONDS} s$([[ "$QUICK" == 1 ]] && echo ', QUICK smoke run: not for conclusions') |"
        echo
        echo "## Side by side"
        echo
        echo "| measurement | hookrunner | webhook | hookrunner / webhook |"
        echo "|---|---:|---:|---:|"
        local a b
        a=$(med bad_rps_hr); b=$(med bad_rps_wh)
        echo "| 1. bad signature, req/s ($CONN_BAD conns; answers 401 / 500) | $(fmt 0 "$a") | $(fmt 0 "$b") | $(ratio "$a" "$b") |"
        b=$(med bad_rps_hr_tls)
        echo "| 1. … hookrunner over TLS (\`tls:\` listener, keep-alive: requests, not handshakes), req/s | $(fmt 0 "$b") | — | |"
        echo "| 2. signed push, wait for /bin/true, req/s ($CONN_WAIT conns) | $(fmt 0 "$hr2") | $(fmt 0 "$wh2") | $(ratio "$hr2" "$wh2") |"
        a=$(med wait_p50_hr); b=$(med wait_p50_wh)
        echo "| 2. … p50 latency, ms | $(fmt 2 "$a" 1000) | $(fmt 2 "$b" 1000) | $(ratio "$a" "$b") |"
        a=$(med wait_p99_hr); b=$(med wait_p99_wh)
        echo "| 2. … p99 latency, ms | $(fmt 2 "$a" 1000) | $(fmt 2 "$b" 1000) | $(ratio "$a" "$b") |"
        a=$(med wait_non2xx_hr); b=$(med wait_non2xx_wh)
        echo "| 2. … non-2xx answers (median per run) | $(fmt 0 "$a") | $(fmt 0 "$b") | |"
        a=$(med wait_cpu_hr_own); b=$(med wait_cpu_wh_own)
        echo "| 2. … the server's own CPU (user+sys) per request, µs | $(fmt 0 "$a") | $(fmt 0 "$b") | $(ratio "$a" "$b") |"
        a=$(med wait_cpu_hr_cmd); b=$(med wait_cpu_wh_cmd)
        echo "| 2. … its commands' CPU per request, µs | $(fmt 0 "$a") | $(fmt 0 "$b") | $(ratio "$a" "$b") |"
        a=$(med async_accept_s_hr); b=$(med async_accept_s_wh)
        echo "| 3. async: $ASYNC_N pushes all answered, s | $(fmt 3 "$a") | $(fmt 3 "$b") | $(ratio "$a" "$b") |"
        a=$(med async_ran_s_hr); b=$(med async_ran_s_wh)
        echo "| 3. async: all $ASYNC_N commands ran (lines in file), s | $(fmt 3 "$a") | $(fmt 3 "$b") | $(ratio "$a" "$b") |"
        echo "| 3. … jobs/s, accept to completion | $(fmt 0 "$(ratio "$ASYNC_N" "$a")") | $(fmt 0 "$(ratio "$ASYNC_N" "$b")") | $(ratio "$b" "$a") |"
        a=$(med async_succ_s_hr)
        echo "| 3. async: all $ASYNC_N jobs \`succeeded\` in the store, s | $(fmt 3 "$a") | — | |"
        a=$(med rss_idle_hr); b=$(med rss_idle_wh)
        echo "| 4. RSS idle (1 s after healthy), MiB | $(fmt 1 "$a" 1024) | $(fmt 1 "$b" 1024) | $(ratio "$a" "$b") |"
        a=$(med rss_peak_wait_hr); b=$(med rss_peak_wait_wh)
        echo "| 4. RSS peak after paths 1+2 (VmHWM), MiB | $(fmt 1 "$a" 1024) | $(fmt 1 "$b" 1024) | $(ratio "$a" "$b") |"
        a=$(med rss_peak_async_hr); b=$(med rss_peak_async_wh)
        echo "| 4. RSS peak after path 3 (VmHWM), MiB | $(fmt 1 "$a" 1024) | $(fmt 1 "$b" 1024) | $(ratio "$a" "$b") |"
        a=$(med startup_hr); b=$(med startup_wh)
        echo "| 4. start to healthy, ms (median of $STARTS) | $(fmt 1 "$a") | $(fmt 1 "$b") | $(ratio "$a" "$b") |"
        echo
        echo "The last column is hookrunner's value over webhook's: above 1 is better for hookrunner in req/s"
        echo "and jobs/s rows, below 1 is better in time, latency and memory rows."
        echo
        report_stores
        echo "## 5. The machine's limit for path 2"
        echo
        echo "\`bench/spawnloop\`: loops each spawning /bin/true (cleared env, own process group, stdout and"
        echo "stderr piped and read to EOF, as hookrunner spawns) and waiting for it, ${RUN_SECONDS} s:"
        echo
        echo "- one loop per core ($NPROC loops): **$(fmt 0 "$sl") spawns/s** (samples: $(samples spawnloop));"
        echo "- $CONN_WAIT loops, the concurrency of path 2: **$(fmt 0 "$slc") spawns/s** (samples: $(samples spawnloop_conc))."
        echo "  One loop per core leaves a core idle while its loop waits for the child, so this is the"
        echo "  fairer ceiling for a server that runs $CONN_WAIT commands at once."
        echo
        echo "| | req/s (path 2) | fraction of $NPROC loops | fraction of $CONN_WAIT loops |"
        echo "|---|---:|---:|---:|"
        echo "| hookrunner | $(fmt 0 "$hr2") | $(ratio "$hr2" "$sl") | $(ratio "$hr2" "$slc") |"
        echo "| webhook | $(fmt 0 "$wh2") | $(ratio "$wh2" "$sl") | $(ratio "$wh2" "$slc") |"
        echo
        echo "## 6a. HMAC cost by body size (through the server)"
        echo
        echo "Bad-signature requests with JSON bodies of each size (wrk, ${SCALE_SECONDS} s, one run);"
        echo "MiB/s = req/s × body size. Both servers read the whole body and compute HMAC-SHA256 over it;"
        echo "webhook also decodes the JSON before it checks the rules. Not \`hookrunner sign\`."
        echo
        echo "| body | conns | hookrunner req/s | hookrunner MiB/s | webhook req/s | webhook MiB/s |"
        echo "|---:|---:|---:|---:|---:|---:|"
        local size
        for size in "${BODY_SIZES[@]}"; do
            a=$(med "size_rps_hr_$size"); b=$(med "size_rps_wh_$size")
            echo "| $(awk -v s="$size" 'BEGIN {if (s >= 1048576) printf "%d MiB", s / 1048576; else printf "%d KiB", s / 1024}') | $(med "size_conns_$size") | $(fmt 0 "$a") | $(fmt 1 "$(awk -v r="$a" -v s="$size" 'BEGIN {print r * s / 1048576}')") | $(fmt 0 "$b") | $(fmt 1 "$(awk -v r="$b" -v s="$size" 'BEGIN {print r * s / 1048576}')") |"
        done
        echo
        echo "Peak RSS after these runs: hookrunner $(fmt 1 "$(med rss_peak_bodies_hr)" 1024) MiB, webhook $(fmt 1 "$(med rss_peak_bodies_wh)" 1024) MiB."
        echo
        echo "## 6b. Number of hooks"
        echo
        echo "Bad-signature requests to the last hook of the file (${SCALE_SECONDS} s, $CONN_BAD conns, one run);"
        echo "\`check\` is the median of 3 runs; start to healthy is one start."
        echo
        echo "| hooks | \`hookrunner check\` ms | hookrunner start ms | hookrunner req/s | hookrunner RSS MiB | webhook start ms | webhook req/s | webhook RSS MiB |"
        echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
        local n
        for n in "${HOOK_COUNTS[@]}"; do
            echo "| $n | $(fmt 1 "$(med "check_ms_$n")") | $(fmt 1 "$(med "hooks_start_hr_$n")") | $(fmt 0 "$(med "hooks_rps_hr_$n")") | $(fmt 1 "$(med "hooks_rss_hr_$n")" 1024) | $(fmt 1 "$(med "hooks_start_wh_$n")") | $(fmt 0 "$(med "hooks_rps_wh_$n")") | $(fmt 1 "$(med "hooks_rss_wh_$n")" 1024) |"
        done
        echo
        echo "## 7. Memory (hookrunner)"
        echo
        echo "The one-hook config of path 2, and $MEMORY_HOOKS hooks from \`bench/lib/gen_config.py valid\`"
        echo "(each: a GitHub signature, a \`when\` with a header leaf and a \`matches\` regex distinct per"
        echo "hook, a templated command and env). Serving: VmRSS 1 s after healthy, no request sent."
        echo "\`check\`: peak RSS (getrusage), median of 3. Per hook: above the one-hook idle RSS."
        echo
        local idle serve hwm check
        idle=$(med mem_idle_1); serve=$(med mem_serve_n); hwm=$(med mem_serve_hwm_n); check=$(med mem_check_n)
        echo "| measurement | MiB | KiB per hook |"
        echo "|---|---:|---:|"
        echo "| idle, 1 hook | $(fmt 1 "$idle" 1024) | |"
        echo "| serving $MEMORY_HOOKS hooks, after load | $(fmt 1 "$serve" 1024) | $(fmt 1 "$(mem_per_hook "$serve" "$idle")") |"
        echo "| … its peak while loading (VmHWM) | $(fmt 1 "$hwm" 1024) | |"
        echo "| \`check\` on $MEMORY_HOOKS hooks, peak | $(fmt 1 "$check" 1024) | $(fmt 1 "$(mem_per_hook "$check" "$idle")") |"
        echo
        echo "## 8. The request log (issue 16)"
        echo
        echo "Bad-signature requests as in path 1 (wrk, ${RUN_SECONDS} s per run, ${ROUNDS} round(s), median)."
        echo "\"default\": hookrunner with no RUST_LOG, so its default info line per request, stderr appended"
        echo "to a file (as a journal takes it); \"warn\": RUST_LOG=warn. webhook without -verbose in both."
        echo
        echo "| conns | hookrunner default req/s | log bytes/request | / webhook | hookrunner warn req/s | / webhook | webhook req/s | default / warn |"
        echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
        local c d w k
        for c in "${LOG_CONNS[@]}"; do
            d=$(med "log_rps_hr_default_$c"); w=$(med "log_rps_hr_warn_$c"); k=$(med "log_rps_wh_$c")
            echo "| $c | $(fmt 0 "$d") | $(fmt 0 "$(med "log_bytes_default_$c")") | $(ratio "$d" "$k") | $(fmt 0 "$w") | $(ratio "$w" "$k") | $(fmt 0 "$k") | $(ratio "$d" "$w") |"
        done
        echo
        echo "## 9. A flood from one address (issue 16)"
        echo
        echo "One address sends the signed push of path 3 at a fixed $FLOOD_RATE req/s for ${RUN_SECONDS} s"
        echo "(\`bench/lib/benchtool.py rate\`, 32 kept connections; a 429 reads and drops the"
        echo "small body, so the connection stays open). \"limited\": \`rate_limit: {per_ip: $FLOOD_LIMIT/s}\` (10x over); \"refused\": \`{per_ip: 1/h, burst: 1}\`,"
        echo "so all but one are 429s; \"accepted\": no limit, every request answered 202 and its job (async,"
        echo "/bin/true) run. CPU: the server's own"
        echo "utime+stime (/proc/PID/stat; its commands excluded) from the first request until every"
        echo "accepted job is \`succeeded\`. ${ROUNDS} round(s), median."
        echo
        echo "| run | sent req/s | 202 | 429 | server CPU s | its commands' CPU s |"
        echo "|---|---:|---:|---:|---:|---:|"
        for k in accepted limited refused; do
            echo "| $k | $(fmt 0 "$(med "flood_rps_$k")") | $(med "flood_202_$k") | $(med "flood_429_$k") | $(med "flood_cpu_$k") | $(med "flood_cmd_cpu_$k") |"
        done
        echo
        echo "The flood costs **$(med flood_pct) %** of the CPU of the same rate of accepted triggers (samples: $(samples flood_pct); target ≤ 20 %)."
        echo "That includes the requests the limit lets through (its rate plus the burst) and their jobs, which"
        echo "at a tenth of the rate batch less in the store than the accepted run's. The 429s alone (the refused"
        echo "run): **$(med flood_pct_refused) %** (samples: $(samples flood_pct_refused)); per request, an accepted trigger costs"
        echo "$(fmt 0 "$(med flood_us_accepted)") µs of server CPU and a 429 $(fmt 0 "$(med flood_us_429)") µs. A 429 reads and drops a small body (up to 16 KiB), so the"
        echo "sender keeps its connections open, as a flooding client would."
        echo
        echo "## 6c. Stored jobs (hookrunner)"
        echo
        echo "The jobs table filled directly with sqlite3 (one real job's row cloned by a recursive CTE,"
        echo "status succeeded), then the server restarted. One connection, ${SCALE_SECONDS} s per measurement;"
        echo "the trigger is the signed push of path 2 (wait mode). Level 0 holds the one template job."
        echo
        echo "| stored jobs | fill s | state dir MiB | start ms | trigger p50 ms | trigger p99 ms | \`GET /jobs?limit=50\` p50 ms | p99 ms | req/s | peak RSS MiB |"
        echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        local j
        for j in "${JOB_LEVELS[@]}"; do
            echo "| $(med "jobs_count_$j") | $(med "jobs_fill_s_$j") | $(med "jobs_db_mib_$j") | $(fmt 1 "$(med "jobs_start_$j")") | $(fmt 2 "$(med "jobs_trig_p50_$j")" 1000) | $(fmt 2 "$(med "jobs_trig_p99_$j")" 1000) | $(fmt 2 "$(med "jobs_list_p50_$j")" 1000) | $(fmt 2 "$(med "jobs_list_p99_$j")" 1000) | $(fmt 0 "$(med "jobs_list_rps_$j")") | $(fmt 1 "$(med "jobs_rss_$j")" 1024) |"
        done
        echo
        cat <<'EOF'
## Not apples to apples

- **Durability.** hookrunner records every job in SQLite (WAL, group commit) when it is accepted,
  when it starts and when it ends; webhook keeps nothing. An async job's insert and start are
  fsynced before its 202 and before its command runs (path 3); a wait job's records are committed
  without an fsync (path 2). Paths 2 and 3 include that cost for hookrunner only.
- **Bad-signature answer.** hookrunner answers 401 `signature_invalid`; webhook 2.8.0 answers 500
  "Error occurred while evaluating hook rules." (the HMAC mismatch is an error in its rule
  evaluation). webhook also decodes the JSON body before it evaluates the rules; hookrunner checks
  the signature on the raw body first.
- **Concurrency limits.** hookrunner runs at most `max_jobs: 64` commands at once and queues the
  rest (durably); webhook starts a goroutine and a process per request with no limit. In path 3 a
  larger burst can make webhook fork thousands of processes at once.
- **What "async" answers.** hookrunner's 202 comes after the job is committed to disk; webhook's
  200 comes before anything is recorded or started.
- **Process setup.** hookrunner clears the environment, puts the command in its own process group
  and reads stdout/stderr into its log (a file is created only at the first output); webhook passes
  its whole environment and collects the combined output in memory.
- **Load generator on the same cores.** wrk (and the Python client of path 3) run on the same
  2 cores as the server and the spawned commands; the numbers are for this machine as a whole.
- **PostgreSQL.** Its server runs on the same 2 cores as hookrunner, wrk and the commands, and
  every instance talks to it over TCP on the loopback; a production database would have its own
  machine. It fsyncs (its default), as SQLite does for an async job's insert and start.
- **Health.** hookrunner answers `/healthz` when it serves; webhook has no health URL, `GET /`
  answering "OK" is used.
- **Path 3 client.** one Python asyncio process with keep-alive connections; its own speed bounds
  the "all answered" time when the server answers faster than it sends.
EOF
        echo
        echo "## Raw samples"
        echo
        echo '```'
        awk -F'\t' '{if ($1 in v) v[$1] = v[$1] ", " $2; else {v[$1] = $2; k[++n] = $1}}
            END {for (i = 1; i <= n; i++) printf "%-28s %s\n", k[i], v[k[i]]}' "$RAW"
        echo '```'
    } >"$OUT"
    echo
    sed -n '/^## Side by side/,/^## Not apples to apples/p' "$OUT" | sed '$d'
    log "report written to $OUT (run took ${took} s)"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi

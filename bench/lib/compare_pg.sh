# bench/lib/compare_pg.sh — the rows of bench/compare.sh beyond hookrunner on SQLite and webhook,
# measured in the same rounds (sourced by compare.sh, whose helpers and variables it uses):
#   * hookrunner on PostgreSQL with 1 instance and with 3 instances (`pg1`, `pg3`), for paths 2
#     and 3, on a throwaway server (tests/postgres/server.sh) with PostgreSQL's defaults, fsync
#     on, since SQLite fsyncs too; a fresh database for every run, as SQLite gets a fresh state
#     directory. With 3 instances the requests are spread over the three: path 2 runs one wrk per
#     instance at once (the connections split between them), path 3 sends connection k to
#     instance k mod 3. Off with BENCH_PG=0.
#   * with BENCH_BASELINE=/path/to/hookrunner, that binary on SQLite (`base`), for paths 2 and 3,
#     with the default config, as the SQLite row: the same numbers, to show they did not change.
# Keys recorded: wait_{rps,p50,p99,non2xx,sockerr}_KEY and async_{accept,ran,succ}_s_KEY.

PG_HOME=""
PG_COUNTS=(1 3)

pg_rows_wanted() { [[ "${BENCH_PG:-1}" == 1 ]]; }
baseline_wanted() { [[ -n "${BENCH_BASELINE:-}" ]]; }

# Starts the PostgreSQL server (installed with apt-get if missing) once, before the rounds.
pg_rows_setup() {
    if baseline_wanted; then
        [[ -x "$BENCH_BASELINE" ]] || die "BENCH_BASELINE=$BENCH_BASELINE is not an executable"
        "$BENCH_BASELINE" check --config "$WORK/hr-wait.yaml" >/dev/null ||
            die "the baseline $BENCH_BASELINE refuses the bench config"
    fi
    pg_rows_wanted || return 0
    # shellcheck source=tests/postgres/server.sh
    source "$REPO/tests/postgres/server.sh"
    PG_HOME=$(mktemp -d -t hookrunner-pg.XXXXXX)
    log "starting PostgreSQL (its defaults, fsync on) in $PG_HOME"
    pg_start "$PG_HOME" || die "PostgreSQL did not start"
    [[ "$(pg_psql "$PG_URL" "SHOW fsync")" == on ]] || die "the bench's PostgreSQL must fsync"
}

# From compare.sh's cleanup, after the servers are stopped.
pg_rows_cleanup() {
    [[ -n "$PG_HOME" ]] || return 0
    pg_stop
    if [[ "${BENCH_KEEP:-0}" == 1 ]]; then log "PostgreSQL directory kept: $PG_HOME"; else rm -rf "$PG_HOME"; fi
}

# start_cluster CONFIG COUNT DB: COUNT instances on a fresh database DB; sets CLUSTER_PIDS and
# CLUSTER_URLS (their hook URLs) and CLUSTER_DB (the database's URL).
start_cluster() {
    local config=$1 count=$2 db=$3 i port
    CLUSTER_DB=$(pg_fresh_db "$db") || die "cannot create the database $db"
    CLUSTER_PIDS=()
    CLUSTER_URLS=()
    for ((i = 1; i <= count; i++)); do
        port=$(free_port)
        start_hr "$config" "$WORK/state-$db-$i" "$port" --store "$CLUSTER_DB" --instance "bench-$i"
        CLUSTER_PIDS+=("$SRV_PID")
        CLUSTER_URLS+=("http://127.0.0.1:$port/hooks/push")
    done
}

stop_cluster() {
    local pid
    for pid in "${CLUSTER_PIDS[@]}"; do stop_srv "$pid"; done
    CLUSTER_PIDS=()
}

# wait_run KEY URL...: path 2 against the URLs at once, one wrk each, BENCH_CONN_WAIT connections
# split between them. Records the summed req/s, the median p50 and the worst p99.
wait_run() {
    local key=$1
    shift
    local urls=("$@") count=$# i conns threads pids=() files=() line kv
    for ((i = 0; i < count; i++)); do
        conns=$((CONN_WAIT / count + (i < CONN_WAIT % count ? 1 : 0)))
        threads=$((WRK_THREADS / count > 0 ? WRK_THREADS / count : 1))
        ((conns < threads)) && threads=$conns
        WRK_N=$((WRK_N + 1))
        files+=("$WORK/wrk-$WRK_N-wait-$key-$((i + 1)).txt")
        BENCH_METHOD=POST BENCH_BODY_FILE="$WORK/body.json" BENCH_HEADERS="$GOOD" \
            wrk -t"$threads" -c"$conns" -d"${RUN_SECONDS}s" --timeout 10s -s "$LUA" "${urls[i]}" \
            >"${files[i]}" 2>&1 &
        pids+=($!)
    done
    for ((i = 0; i < count; i++)); do
        wait "${pids[i]}" || { cat "${files[i]}" >&2; die "wrk failed (wait-$key)"; }
    done
    local rps=0 non2xx=0 sockerr=0 p50s=() p99=0
    for ((i = 0; i < count; i++)); do
        line=$(grep '^WRK_RESULT' "${files[i]}") || { cat "${files[i]}" >&2; die "no result from wrk (wait-$key)"; }
        W=()
        for kv in ${line#WRK_RESULT }; do W[${kv%%=*}]=${kv#*=}; done
        rps=$(awk -v a="$rps" -v b="${W[rps]}" 'BEGIN {printf "%.1f", a + b}')
        non2xx=$((non2xx + W[non2xx]))
        sockerr=$((sockerr + W[connect_err] + W[read_err] + W[write_err] + W[timeout_err]))
        p50s+=("${W[p50_us]}")
        ((W[p99_us] > p99)) && p99=${W[p99_us]}
    done
    local p50
    p50=$(printf '%s\n' "${p50s[@]}" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
    record "wait_rps_$key" "$rps"; record "wait_p50_$key" "$p50"; record "wait_p99_$key" "$p99"
    record "wait_non2xx_$key" "$non2xx"; record "wait_sockerr_$key" "$sockerr"
    log "  wait-$key ($count instance(s)): $rps req/s, p50 $(fmt 2 "$p50" 1000) ms, p99 $(fmt 2 "$p99" 1000) ms (worst), non-2xx $non2xx, socket errors $sockerr"
}

# async_run KEY DONE STORE_OPTION STORE URL...: path 3 over the URLs; STORE_OPTION is --db (a
# SQLite file) or --pg (a PostgreSQL URL) where the jobs are counted `succeeded`.
async_run() {
    local key=$1 done_file=$2 store_option=$3 store=$4
    shift 4
    local args=("$1") url h hs
    shift
    for url in "$@"; do args+=(--also "$url"); done
    IFS='|' read -ra hs <<<"$GOOD"
    for h in "${hs[@]}"; do args+=(--header "$h"); done
    local line
    line=$("${TOOL[@]}" async "${args[@]}" --body "$WORK/body.json" --n "$ASYNC_N" \
        --conc "$ASYNC_CONC" --done-file "$done_file" "$store_option" "$store" --timeout 300) ||
        { echo "$line" >&2; die "async run failed ($key)"; }
    log "  $key: $line"
    declare -A A=()
    local kv
    for kv in ${line#ASYNC_RESULT }; do A[${kv%%=*}]=${kv#*=}; done
    record "async_accept_s_$key" "${A[accepted_s]}"; record "async_ran_s_$key" "${A[ran_s]}"
    record "async_succ_s_$key" "${A[succeeded_s]}"
}

# Path 2 for the extra rows, in round R (after hookrunner and webhook).
extra_rows_wait() {
    local r=$1 count url port
    if baseline_wanted; then
        rm -rf "$WORK/state-base"
        port=$(free_port)
        HR_SERVE=$BENCH_BASELINE start_hr "$WORK/hr-wait.yaml" "$WORK/state-base" "$port"
        url="http://127.0.0.1:$port/hooks/push"
        expect_status "baseline signed push" "$url" 200 POST "$WORK/body.json" "$GOOD" '"succeeded"'
        wait_run base "$url"
        stop_srv "$SRV_PID"
    fi
    pg_rows_wanted || return 0
    for count in "${PG_COUNTS[@]}"; do
        start_cluster "$WORK/hr-wait.yaml" "$count" "bench_wait_${count}_$r"
        for url in "${CLUSTER_URLS[@]}"; do
            expect_status "PostgreSQL signed push" "$url" 200 POST "$WORK/body.json" "$GOOD" '"succeeded"'
        done
        wait_run "pg$count" "${CLUSTER_URLS[@]}"
        stop_cluster
    done
}

# Path 3 for the extra rows, in round R.
extra_rows_async() {
    local r=$1 count done_file port
    if baseline_wanted; then
        done_file="$WORK/done-base-$r.txt"
        : >"$done_file"
        hr_config "$WORK/hr-async-base.yaml" async "[\"/bin/sh\", \"-c\", \"echo x >> $done_file\"]"
        rm -rf "$WORK/state-async-base"
        port=$(free_port)
        HR_SERVE=$BENCH_BASELINE start_hr "$WORK/hr-async-base.yaml" "$WORK/state-async-base" "$port"
        async_run base "$done_file" --db "$WORK/state-async-base/hookrunner.db" \
            "http://127.0.0.1:$port/hooks/push"
        stop_srv "$SRV_PID"
    fi
    pg_rows_wanted || return 0
    for count in "${PG_COUNTS[@]}"; do
        done_file="$WORK/done-pg$count-$r.txt"
        : >"$done_file"
        hr_config "$WORK/hr-async-pg.yaml" async "[\"/bin/sh\", \"-c\", \"echo x >> $done_file\"]"
        start_cluster "$WORK/hr-async-pg.yaml" "$count" "bench_async_${count}_$r"
        async_run "pg$count" "$done_file" --pg "$CLUSTER_DB" "${CLUSTER_URLS[@]}"
        stop_cluster
    done
}

# The table of the report: paths 2 and 3 for every server and store measured.
report_stores() {
    local sqlite_jobs
    sqlite_jobs=$(ratio "$ASYNC_N" "$(med async_succ_s_hr)")
    echo "## Paths 2 and 3 by store"
    echo
    echo "The same rounds as above. PostgreSQL: $(pg_version), on this machine, its defaults (fsync on);"
    echo "a fresh database per run. With 3 instances path 2 runs one wrk per instance at once"
    echo "($CONN_WAIT connections split between them; p50 is the median of the three, p99 the worst) and"
    echo "path 3 sends connection k to instance k mod 3. Jobs/s are $ASYNC_N over the time until all"
    echo "$ASYNC_N jobs are \`succeeded\` in the store (webhook: until its commands ran)."
    echo
    echo "| server | 2. req/s | 2. p50 ms | 2. p99 ms | 3. all answered, s | 3. all ran, s | 3. all \`succeeded\`, s | 3. jobs/s | 3. jobs/s vs SQLite |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    local key label jobs done_at
    for key in hr pg1 pg3 base wh; do
        case $key in
            hr) label="hookrunner, SQLite" ;;
            pg1) label="hookrunner, PostgreSQL, 1 instance" ;;
            pg3) label="hookrunner, PostgreSQL, 3 instances" ;;
            base) label="baseline $(baseline_version), SQLite" ;;
            wh) label="webhook (nothing stored)" ;;
        esac
        [[ "$(med "wait_rps_$key")" == n/a && "$(med "async_ran_s_$key")" == n/a ]] && continue
        done_at=$(med "async_succ_s_$key")
        [[ $key == wh ]] && done_at=$(med async_ran_s_wh)
        jobs=$(ratio "$ASYNC_N" "$done_at")
        echo "| $label | $(fmt 0 "$(med "wait_rps_$key")") | $(fmt 2 "$(med "wait_p50_$key")" 1000) | $(fmt 2 "$(med "wait_p99_$key")" 1000) | $(fmt 3 "$(med "async_accept_s_$key")") | $(fmt 3 "$(med "async_ran_s_$key")") | $([[ $key == wh ]] && echo — || fmt 3 "$done_at") | $(fmt 0 "$jobs") | $(ratio "$jobs" "$sqlite_jobs") |"
    done
    echo
}

pg_version() {
    if [[ -n "${PG_BIN:-}" && -x "$PG_BIN/postgres" ]]; then "$PG_BIN/postgres" --version | awk '{print $3}'; else echo "?"; fi
}

baseline_version() {
    if baseline_wanted; then { "$BENCH_BASELINE" --version 2>/dev/null || echo "?"; } | awk 'NR == 1 {print $NF}'; fi
}

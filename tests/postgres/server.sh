#!/usr/bin/env bash
# tests/postgres/server.sh — a throwaway PostgreSQL server, for scripts to source (the tests'
# run.sh, bench/crash.sh --cluster, bench/compare.sh):
#
#     source tests/postgres/server.sh
#     pg_start "$(mktemp -d -t hookrunner-pg.XXXXXX)" [-c NAME=VALUE ...]   # sets PG_URL
#     url=$(pg_fresh_db bench_1)        # a new, empty database on it; prints its URL
#     pg_psql "$url" "SELECT 1"         # one statement, unaligned output
#     pg_stop                           # stops it at once (its directory stays: the caller's)
#
# The server is Debian's `postgresql` (installed with apt-get if missing): a new cluster in DIR
# (data in DIR/data, log in DIR/server.log, unix socket in DIR), on a free port of 127.0.0.1 only,
# with a database `hookrunner`. It runs as `postgres` when the caller is root (PostgreSQL refuses
# root). Its settings are PostgreSQL's defaults, `fsync=on` included, plus max_connections=200;
# the extra `-c` options change them (the tests pass `-c fsync=off`; a benchmark must not, since
# SQLite fsyncs).
#
# Sets: PG_BIN (the server's bin directory), PG_DIR, PG_PORT, PG_URL
# (postgres://postgres@127.0.0.1:PORT/hookrunner), PG_LOG.

PG_BIN=""
PG_DIR=""
PG_PORT=""
PG_URL=""
PG_LOG=""

_pg_say() { echo "server.sh: $*" >&2; }

# The newest installed server's bin directory, or nothing.
_pg_find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

# Runs a server program as `postgres` when this script is root, else as the caller.
_pg_as_server() {
    if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# pg_install: sets PG_BIN, installing Debian's `postgresql` when no server is there.
pg_install() {
    PG_BIN=$(_pg_find_bin)
    if [[ -z "$PG_BIN" || ! -x "$PG_BIN/initdb" ]]; then
        [[ "$(id -u)" == 0 ]] || { _pg_say "PostgreSQL is not installed; run as root to apt-get install it"; return 1; }
        _pg_say "installing postgresql with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        PG_BIN=$(_pg_find_bin)
    fi
    [[ -n "$PG_BIN" && -x "$PG_BIN/initdb" ]] || { _pg_say "no initdb under /usr/lib/postgresql/*/bin"; return 1; }
}

# pg_start DIR [-c NAME=VALUE ...]: a new cluster in DIR (empty or missing; the server's user must
# be able to reach it, so make it with `mktemp -d`, not inside a 0700 directory of root's),
# started and answering; sets PG_URL.
pg_start() {
    local dir=${1:?pg_start needs a directory}
    shift
    pg_install || return 1
    mkdir -p "$dir"
    if [[ "$(id -u)" == 0 ]]; then
        chown postgres "$dir"
        runuser -u postgres -- test -w "$dir" ||
            { _pg_say "the user \`postgres\` cannot write $dir; use a directory of its own (mktemp -d)"; return 1; }
    fi
    PG_DIR=$dir
    PG_LOG="$dir/server.log"
    PG_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    _pg_as_server "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null ||
        { _pg_say "initdb failed in $dir/data"; return 1; }
    # The unix socket goes in DIR too, away from the system's.
    _pg_as_server "$PG_BIN/pg_ctl" -D "$dir/data" -l "$PG_LOG" -w \
        -o "-p $PG_PORT -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 $*" start >/dev/null ||
        { _pg_say "the server did not start; its log ends:"; tail -n 20 "$PG_LOG" >&2; return 1; }
    _pg_as_server "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres hookrunner ||
        { _pg_say "createdb failed"; return 1; }
    PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/hookrunner"
}

# pg_stop: stops the server started by pg_start, at once (nothing in it is kept). Safe to call
# twice, or when none was started.
pg_stop() {
    [[ -n "$PG_DIR" && -d "$PG_DIR/data" ]] || return 0
    _pg_as_server "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
}

# pg_psql URL SQL: runs one statement on URL and prints the rows, unaligned, without headers.
pg_psql() {
    PGOPTIONS="-c client_min_messages=warning" "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 "$1" -c "$2"
}

# pg_fresh_db NAME: (re)creates the empty database NAME on the server and prints its URL.
pg_fresh_db() {
    local name=$1
    [[ "$name" =~ ^[a-z_][a-z0-9_]*$ ]] || { _pg_say "bad database name \`$name\`"; return 1; }
    pg_psql "$PG_URL" "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null &&
        pg_psql "$PG_URL" "CREATE DATABASE $name" >/dev/null || return 1
    echo "postgres://postgres@127.0.0.1:$PG_PORT/$name"
}

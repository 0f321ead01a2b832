#!/usr/bin/env bash
# Runs the PostgreSQL tests (`cargo test --test postgres`) against a throwaway PostgreSQL server:
# Debian's `postgresql` (installed if missing), a new cluster in a temporary directory on a free
# port of 127.0.0.1, stopped and removed on exit. Arguments go to `cargo test` (a test name,
# `-- --nocapture`, ...).
set -euo pipefail
cd "$(dirname "$0")/../.."

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
bin=$(find_bin)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    bin=$(find_bin)
fi

# PostgreSQL refuses to run as root: the server runs as `postgres` when this script is root.
as_server() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

dir=$(mktemp -d -t hookrunner-pg.XXXXXX)
cleanup() {
    as_server "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT
if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_server "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
# The unix socket goes in the temporary directory too, away from the system's.
as_server "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off" start >/dev/null
as_server "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres hookrunner

export HOOKRUNNER_TEST_POSTGRES="postgres://postgres@127.0.0.1:$port/hookrunner"
# For the tests that stop and start a server of their own.
export HOOKRUNNER_TEST_POSTGRES_BIN="$bin"
status=0
cargo test --test postgres "$@" || status=$?
if [ "$status" != 0 ]; then
    echo "--- the server's log ($dir/server.log), last lines:" >&2
    tail -n 30 "$dir/server.log" >&2 || true
fi
exit "$status"

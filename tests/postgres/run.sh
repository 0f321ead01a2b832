#!/usr/bin/env bash
# Runs the PostgreSQL tests (`cargo test --test postgres`) against a throwaway PostgreSQL server
# (tests/postgres/server.sh: Debian's `postgresql`, installed if missing, a new cluster in a
# temporary directory on a free port of 127.0.0.1, stopped and removed on exit). Arguments go to
# `cargo test` (a test name, `-- --nocapture`, ...).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tests/postgres/server.sh
source tests/postgres/server.sh

dir=$(mktemp -d -t hookrunner-pg.XXXXXX)
cleanup() {
    pg_stop
    rm -rf "$dir"
}
trap cleanup EXIT
# The tests' server does not fsync: they are about behaviour, not durability against power loss.
pg_start "$dir" -c fsync=off

export HOOKRUNNER_TEST_POSTGRES="$PG_URL"
# For the tests that stop and start a server of their own.
export HOOKRUNNER_TEST_POSTGRES_BIN="$PG_BIN"
status=0
cargo test --test postgres "$@" || status=$?
if [[ "$status" != 0 ]]; then
    echo "--- the server's log ($PG_LOG), last lines:" >&2
    tail -n 30 "$PG_LOG" >&2 || true
fi
exit "$status"

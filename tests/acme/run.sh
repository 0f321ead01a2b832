#!/usr/bin/env bash
# ACME with Debian's `pebble` (a test ACME CA): hookrunner orders a certificate for `localhost`
# with the tls-alpn-01 challenge answered on its own `tls:` listener, serves it, keeps it under
# state_dir/acme (folder 0700, files 0600), and on restart serves the kept one without a new
# order.
#
# Installs what is missing (pebble, curl, openssl), as root; exits non-zero when pebble cannot be
# installed or any step fails: it never passes without the real CA.
#
# Debian's pebble ships no certificate for its own HTTPS API (upstream's test/certs), so this
# script makes a throwaway CA and a `localhost` leaf for it with openssl; that CA is what
# hookrunner's `ca_roots` trusts. The certificates pebble issues chain to a root it makes at each
# start and serves at its management port, `/roots/0`; curl trusts that one.
#
#   bash tests/acme/run.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

# shellcheck source=tests/lib/install.sh
source "$ROOT/tests/lib/install.sh"

PEBBLE=/usr/bin/pebble
WORK=""
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    [ -z "$WORK" ] || rm -rf "$WORK"
}
trap cleanup EXIT

ensure_tools() {
    local missing=()
    [ -x "$PEBBLE" ] || missing+=(pebble)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    if [ "${#missing[@]}" -gt 0 ]; then
        [ "$(id -u)" = 0 ] || die "missing ${missing[*]}; run as root to apt-get install them"
        apt_install "${missing[@]}" || die "apt-get could not install ${missing[*]}"
    fi
    [ -x "$PEBBLE" ] || die "$PEBBLE is missing after installing pebble"
}

# A TCP port nothing listens on now.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_until SECONDS WHAT COMMAND...: runs COMMAND every 0.2 s until it succeeds.
wait_until() {
    local seconds=$1 what=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.2
    done
    log "$what"
}

make_pebble_https_cert() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj /CN=hookrunner-acme-test-ca -keyout "$WORK/api-ca.key" -out "$WORK/api-ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
        -keyout "$WORK/api.key" -out "$WORK/api.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$WORK/api.ext"
    openssl x509 -req -in "$WORK/api.csr" -CA "$WORK/api-ca.pem" -CAkey "$WORK/api-ca.key" \
        -CAcreateserial -days 2 -extfile "$WORK/api.ext" -out "$WORK/api.pem" 2>/dev/null
}

start_pebble() {
    cat >"$WORK/pebble.json" <<EOF
{"pebble": {
  "listenAddress": "127.0.0.1:$ACME_PORT",
  "managementListenAddress": "127.0.0.1:$MANAGEMENT_PORT",
  "certificate": "$WORK/api.pem",
  "privateKey": "$WORK/api.key",
  "httpPort": $UNUSED_PORT,
  "tlsPort": $TLS_PORT,
  "ocspResponderURL": "",
  "externalAccountBindingRequired": false
}}
EOF
    PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 "$PEBBLE" -config "$WORK/pebble.json" >"$WORK/pebble.log" 2>&1 &
    PIDS+=($!)
    wait_until 30 "pebble is up" curl -sf --cacert "$WORK/api-ca.pem" "https://localhost:$ACME_PORT/dir" ||
        { cat "$WORK/pebble.log"; die "pebble did not start"; }
    curl -sf --cacert "$WORK/api-ca.pem" "https://127.0.0.1:$MANAGEMENT_PORT/roots/0" >"$WORK/issuing-root.pem" ||
        die "pebble does not serve its root at /roots/0"
}

write_config() {
    cat >"$WORK/hooks.yaml" <<EOF
server:
  listen: ["tls:127.0.0.1:$TLS_PORT", "127.0.0.1:$PLAIN_PORT"]
  state_dir: $WORK/state
  tls:
    acme:
      domains: [localhost]
      email: ops@example.com
      directory: https://localhost:$ACME_PORT/dir
      ca_roots: $WORK/api-ca.pem
hooks:
  - id: hello
    signature:
      github: {secret: env:ACME_TEST_SECRET}
    run: {shell: 'true'}
EOF
    "$HOOKRUNNER_BIN" check --config "$WORK/hooks.yaml" >/dev/null || die "hookrunner check refuses the ACME config"
}

# serve LOG: starts hookrunner, its log in LOG; sets SERVER_PID.
serve() {
    "$HOOKRUNNER_BIN" serve --config "$WORK/hooks.yaml" >"$1" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    wait_until 30 "hookrunner is up" curl -sf "http://127.0.0.1:$PLAIN_PORT/healthz" ||
        { cat "$1"; die "hookrunner did not start"; }
}

stop_server() {
    kill "$SERVER_PID"
    wait "$SERVER_PID" || true
}

https_ok() {
    curl -sf --cacert "$WORK/issuing-root.pem" "https://localhost:$TLS_PORT/healthz"
}

signed_request() {
    local body='{"ref":"refs/heads/main"}' headers=()
    local line
    while IFS= read -r line; do
        headers+=(-H "$line")
    done < <("$HOOKRUNNER_BIN" sign --provider github --secret env:ACME_TEST_SECRET --data "$body")
    curl -sS --fail-with-body --cacert "$WORK/issuing-root.pem" -H 'Content-Type: application/json' \
        "${headers[@]}" --data "$body" "https://localhost:$TLS_PORT/hooks/hello"
}

mode_of() { stat -c %a "$1"; }

check_modes() {
    [ "$(mode_of "$WORK/state/acme")" = 700 ] || die "state_dir/acme is mode $(mode_of "$WORK/state/acme"), not 700"
    local file
    for file in account.json cert.pem key.pem; do
        [ -f "$WORK/state/acme/$file" ] || die "state_dir/acme/$file is missing"
        [ "$(mode_of "$WORK/state/acme/$file")" = 600 ] ||
            die "state_dir/acme/$file is mode $(mode_of "$WORK/state/acme/$file"), not 600"
    done
    log "state_dir/acme is 0700, account.json, cert.pem and key.pem 0600"
}

orders_in_pebble_log() { grep -c 'POST /order-plz' "$WORK/pebble.log" || true; }

main() {
    local started=$SECONDS
    ensure_tools
    command -v python3 >/dev/null 2>&1 || apt_install python3
    build_hookrunner
    WORK="$(mktemp -d)"
    export ACME_TEST_SECRET="acme-test-secret"
    ACME_PORT=$(free_port) MANAGEMENT_PORT=$(free_port) UNUSED_PORT=$(free_port)
    TLS_PORT=$(free_port) PLAIN_PORT=$(free_port)
    make_pebble_https_cert
    start_pebble
    write_config

    serve "$WORK/first.log"
    wait_until 120 "pebble issued a certificate and hookrunner serves it" https_ok ||
        { cat "$WORK/first.log"; tail -30 "$WORK/pebble.log"; die "no certificate from pebble"; }
    grep -q 'ACME certificate issued' "$WORK/first.log" || die "the log does not say the certificate was issued"
    local answer
    answer=$(signed_request) || die "the signed request over HTTPS failed: $answer"
    log "signed request over HTTPS: $answer"
    printf '%s' "$answer" | grep -q '"status":"succeeded"' || die "the signed request's job did not succeed: $answer"
    local http2
    http2=$(curl -sf --http2 -o /dev/null -w '%{http_version}' --cacert "$WORK/issuing-root.pem" "https://localhost:$TLS_PORT/healthz")
    [ "$http2" = 2 ] || die "a client offering h2 got HTTP/$http2 with acme-tls/1 also on offer"
    log "a browser-like client still gets HTTP/2"
    curl -sf "http://127.0.0.1:$PLAIN_PORT/metrics" | grep -q '^hookrunner_tls_certificate_expiry_seconds [0-9]' ||
        die "/metrics has no hookrunner_tls_certificate_expiry_seconds for the issued certificate"
    check_modes
    local serial orders
    serial=$(openssl x509 -in "$WORK/state/acme/cert.pem" -noout -serial)
    orders=$(orders_in_pebble_log)
    stop_server

    serve "$WORK/second.log"
    https_ok >/dev/null || die "after a restart, the kept certificate is not served at once"
    local served
    served=$(openssl s_client -connect "127.0.0.1:$TLS_PORT" -servername localhost </dev/null 2>/dev/null |
        openssl x509 -noout -serial)
    [ "$served" = "$serial" ] || die "after a restart, $served is served, not the kept $serial"
    grep -q 'serving TLS with the kept ACME certificate' "$WORK/second.log" || die "the restart did not take the kept certificate"
    [ "$(orders_in_pebble_log)" = "$orders" ] || die "the restart ordered a new certificate"
    log "a restart serves the kept certificate ($serial) without a new order"
    stop_server
    log "done in $((SECONDS - started))s"
}

main "$@"

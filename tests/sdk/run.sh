#!/usr/bin/env bash
# Cross-checks hookrunner's signatures against the providers' own SDKs (see tests/sdk/check.py).
#
# Installs what is missing: the Python SDKs stripe, standardwebhooks and slack_sdk into a virtualenv
# at target/sdk-venv, and the npm package @octokit/webhooks-methods into target/sdk-node (skipped,
# with a message, only when node is not installed at all). Then builds the debug binary and runs
# the checks. Exits non-zero on any failure.
#
#   bash tests/sdk/run.sh        # from the repository root (or anywhere: it finds the root itself)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

VENV="$ROOT/target/sdk-venv"
NODE_PREFIX="$ROOT/target/sdk-node"
PY_PACKAGES=(stripe standardwebhooks slack_sdk)
NODE_PACKAGE="@octokit/webhooks-methods"
APT_UPDATED=0

log() { printf '== %s\n' "$*"; }

# apt-get install, running `apt-get update` once before the first install.
apt_install() {
    if [ "$APT_UPDATED" = 0 ]; then
        log "apt-get update"
        apt-get update -qq
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

# python3 with a working venv module (ensurepip is what Debian's python3 lacks without python3-venv).
ensure_python() {
    if ! command -v python3 >/dev/null 2>&1; then
        apt_install python3 python3-venv
    elif ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        apt_install python3-venv
    fi
}

# The virtualenv with the three SDKs; recreated when it is broken (say, its python is gone).
ensure_venv() {
    if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import stripe, standardwebhooks, slack_sdk' 2>/dev/null; then
        log "Python SDKs already installed in target/sdk-venv"
        return
    fi
    if ! [ -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
        ensure_python
        log "creating target/sdk-venv"
        rm -rf "$VENV"
        python3 -m venv "$VENV"
    fi
    log "pip install ${PY_PACKAGES[*]}"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}"
}

# @octokit/webhooks-methods under target/sdk-node; returns 1 when node is not installed at all.
ensure_node_package() {
    if ! command -v node >/dev/null 2>&1; then
        log "SKIPPING the GitHub (octokit) checks: node is not installed"
        return 1
    fi
    if [ -f "$NODE_PREFIX/node_modules/$NODE_PACKAGE/package.json" ]; then
        log "$NODE_PACKAGE already installed in target/sdk-node"
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        apt_install npm
    fi
    log "npm install $NODE_PACKAGE"
    mkdir -p "$NODE_PREFIX"
    npm install --prefix "$NODE_PREFIX" --no-audit --no-fund --loglevel=error "$NODE_PACKAGE"
}

main() {
    local started=$SECONDS
    ensure_venv
    if ensure_node_package; then
        export SDK_NODE_DIR="$NODE_PREFIX"
    fi
    log "cargo build"
    cargo build
    export HOOKRUNNER_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/hookrunner"
    log "running tests/sdk/check.py"
    local status=0
    "$VENV/bin/python" "$ROOT/tests/sdk/check.py" || status=$?
    log "done in $((SECONDS - started))s"
    return "$status"
}

main "$@"

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

# shellcheck source=tests/lib/install.sh
source "$ROOT/tests/lib/install.sh"

VENV="$ROOT/target/sdk-venv"
NODE_PREFIX="$ROOT/target/sdk-node"
NODE_PACKAGE="@octokit/webhooks-methods"

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
    ensure_venv "$VENV" "stripe, standardwebhooks, slack_sdk" stripe standardwebhooks slack_sdk
    if ensure_node_package; then
        export SDK_NODE_DIR="$NODE_PREFIX"
    fi
    build_hookrunner
    log "running tests/sdk/check.py"
    local status=0
    "$VENV/bin/python" "$ROOT/tests/sdk/check.py" || status=$?
    log "done in $((SECONDS - started))s"
    return "$status"
}

main "$@"

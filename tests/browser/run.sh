#!/usr/bin/env bash
# Drives the web page at /ui/ in headless Chromium (see tests/browser/check.py), saving its
# screenshots into docs/screenshots/.
#
# Installs what is missing: Debian's chromium and chromium-driver (/usr/bin/chromium,
# /usr/bin/chromedriver) and, from PyPI, selenium into a virtualenv at target/browser-venv. Then
# builds the debug binary and runs the steps. Exits non-zero when anything is missing or any step
# fails: it never passes without the browser.
#
#   bash tests/browser/run.sh              # every step
#   bash tests/browser/run.sh cancel xss   # only these (and sign-in, which they need)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

# shellcheck source=tests/lib/install.sh
source "$ROOT/tests/lib/install.sh"

VENV="$ROOT/target/browser-venv"
CHROMIUM=/usr/bin/chromium
CHROMEDRIVER=/usr/bin/chromedriver

ensure_chromium() {
    if [ -x "$CHROMIUM" ] && [ -x "$CHROMEDRIVER" ]; then
        log "chromium and chromium-driver already installed"
    else
        [ "$(id -u)" = 0 ] || die "chromium and chromium-driver are not installed; run as root to apt-get install them"
        apt_install chromium chromium-driver || die "apt-get could not install chromium and chromium-driver"
    fi
    [ -x "$CHROMIUM" ] || die "$CHROMIUM is missing after installing chromium"
    [ -x "$CHROMEDRIVER" ] || die "$CHROMEDRIVER is missing after installing chromium-driver"
    "$CHROMIUM" --version 2>/dev/null || die "$CHROMIUM does not run"
    "$CHROMEDRIVER" --version || die "$CHROMEDRIVER does not run"
}

main() {
    local started=$SECONDS
    ensure_chromium
    ensure_venv "$VENV" selenium selenium
    build_hookrunner
    log "running tests/browser/check.py $*"
    local status=0
    CHROMIUM="$CHROMIUM" CHROMEDRIVER="$CHROMEDRIVER" "$VENV/bin/python" "$ROOT/tests/browser/check.py" "$@" || status=$?
    log "done in $((SECONDS - started))s"
    [ "$status" = 0 ] || die "the browser checks failed (exit $status)"
}

main "$@"

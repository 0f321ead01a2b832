#!/usr/bin/env bash
# adnanh/webhook and hookrunner side by side (see tests/webhook-diff/check.py): the same hooks
# files and requests to Debian's `webhook` and to hookrunner serving what `import-webhook` made of
# them; every difference must be a row of the README's table "Where a converted hook still
# differs from webhook".
#
# Installs what is missing: Debian's `webhook` (/usr/bin/webhook), as root. Then builds the debug
# binary and runs the cases. Exits non-zero when `webhook` cannot be installed or any case fails:
# it never passes without the real webhook.
#
#   bash tests/webhook-diff/run.sh             # every case
#   bash tests/webhook-diff/run.sh github-push # only these (rows no case shows are then not checked)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

# shellcheck source=tests/lib/install.sh
source "$ROOT/tests/lib/install.sh"

WEBHOOK=/usr/bin/webhook

ensure_webhook() {
    if [ -x "$WEBHOOK" ]; then
        log "webhook already installed"
    else
        [ "$(id -u)" = 0 ] || die "Debian's webhook is not installed; run as root to apt-get install it"
        apt_install webhook || die "apt-get could not install webhook"
    fi
    [ -x "$WEBHOOK" ] || die "$WEBHOOK is missing after installing webhook"
    "$WEBHOOK" -version || die "$WEBHOOK does not run"
}

main() {
    local started=$SECONDS
    ensure_webhook
    # check.py needs python3's standard library only.
    command -v python3 >/dev/null 2>&1 || apt_install python3
    build_hookrunner
    log "running tests/webhook-diff/check.py $*"
    local status=0
    WEBHOOK_BIN="$WEBHOOK" python3 "$ROOT/tests/webhook-diff/check.py" "$@" || status=$?
    log "done in $((SECONDS - started))s"
    [ "$status" = 0 ] || die "adnanh/webhook and hookrunner differ beyond the README's table of differences (exit $status)"
}

main "$@"

# Shared by the scripts under tests/ that install what they need from Debian and PyPI:
# `source` it, then call `apt_install`, `ensure_venv` and `build_hookrunner`.
#
# Nothing here installs what is already there, so a second run on the same machine is quick.

APT_UPDATED=0

log() { printf '== %s\n' "$*"; }

# Stops the calling script with a message on stderr.
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

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

# ensure_venv DIR MODULES PACKAGE...: a virtualenv at DIR in which `import MODULES` works, pip
# installing the PyPI packages when it does not; recreated when it is broken (say, its python is gone).
ensure_venv() {
    local venv=$1 modules=$2
    shift 2
    local name=${venv#"$ROOT/"}
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import $modules" 2>/dev/null; then
        log "$* already installed in $name"
        return
    fi
    if ! [ -x "$venv/bin/python" ] || ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
        ensure_python
        log "creating $name"
        rm -rf "$venv"
        python3 -m venv "$venv"
    fi
    log "pip install $*"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
}

# Builds the debug binary and exports its path as HOOKRUNNER_BIN, which the checks read.
build_hookrunner() {
    log "cargo build"
    cargo build
    export HOOKRUNNER_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/hookrunner"
}

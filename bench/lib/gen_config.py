"""Writes a config of N hooks to stdout: `valid` (realistic hooks), `broken` (two errors each) or
`nested` (a flow sequence nested N deep). Used by bench/config_load.sh."""
import sys
kind, n = sys.argv[1], int(sys.argv[2])
out = ["server:", "  listen: [\"127.0.0.1:9000\"]", "hooks:"]
if kind == "valid":
    for i in range(n):
        out += [f"  - id: hook-{i}",
                f"    signature: {{github: {{secret: env:GH_SECRET}}}}",
                f"    when:",
                f"      all:",
                f"        - header.X-GitHub-Event: push",
                f"        - payload.ref: {{matches: \"^refs/heads/(main|release-{i})$\"}}",
                f"    run:",
                f"      command: [./deploy.sh, \"{{{{ payload.after }}}}\"]",
                f"      env: {{COMMIT: \"{{{{ payload.after }}}}\"}}"]
elif kind == "broken":
    for i in range(n):
        out += [f"  - id: hook-{i}",
                f"    signature: {{github: {{secret: env:GH_SECRET}}}}",
                f"    when: {{payload.ref: {{matches: \"(\"}}}}",
                f"    run:",
                f"      comand: [./deploy.sh]"]
elif kind == "nested":
    out = ["hooks:", "  - id: a", "    signature: none", "    run: {command: [x]}", "    when: " + "[" * n + "]" * n]
print("\n".join(out))

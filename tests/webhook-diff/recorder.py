#!/usr/bin/env python3
"""The command every corpus hook runs: records what it was given, for check.py to compare.

check.py writes a copy of this file per server with OUT_DIR filled in (the command may get a
clean environment, so the place cannot come from a variable). It writes one JSON file per run
there: its arguments (without argv[0]), its whole environment, and the content of every file a
variable points at (what `pass-file-to-command` gives), base64-encoded. Then it prints a fixed
line and its arguments, for the hooks that answer with the command's output, and exits 1 when an
argument is `fail`, so a failed run can be asked for.
"""
import base64
import json
import os
import sys
import time

OUT_DIR = "@OUT_DIR@"


def main() -> int:
    arguments = sys.argv[1:]
    files = {}
    for name, value in os.environ.items():
        if name != "PWD" and value and os.path.isfile(value):
            with open(value, "rb") as file:
                files[name] = base64.b64encode(file.read()).decode()
    record = {"argv": arguments, "env": dict(os.environ), "files": files}
    # The system's monotonic clock, zero-padded, so the names sort in the order the runs wrote them.
    name = f"{time.monotonic_ns():020d}-{os.getpid()}"
    partial = os.path.join(OUT_DIR, f".{name}.tmp")
    with open(partial, "w", encoding="utf-8") as out:
        json.dump(record, out)
    # The rename makes the record appear whole, so a reader never sees half of it.
    os.rename(partial, os.path.join(OUT_DIR, f"{name}.json"))
    print("recorded", json.dumps(arguments))
    return 1 if "fail" in arguments else 0


if __name__ == "__main__":
    sys.exit(main())

"""What the Python checks under tests/ share: `hookrunner serve` on a free loopback port, one HTTP
request with the standard library, and a tally of named checks that prints a line for each.

The checks import it after putting this folder on `sys.path`; only the standard library is used.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import traceback
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

ROOT = Path(__file__).resolve().parents[2]
HOOKRUNNER = Path(os.environ.get("HOOKRUNNER_BIN", ROOT / "target" / "debug" / "hookrunner"))
STARTUP_DEADLINE = 20.0  # seconds for the server to answer /healthz
REQUEST_TIMEOUT = 15.0  # seconds for one HTTP request or one subprocess

Headers = Dict[str, str]


@dataclass
class Results:
    """Counts the checks that passed and failed; `CHECK_TRACEBACK=1` prints a failure's traceback."""

    passed: int = 0
    failed: int = 0

    def run(self, name: str, check: Callable[[], Optional[str]]) -> bool:
        """Runs one check: it passes unless it raises. A returned string is shown as a detail."""
        try:
            detail = check()
        except Exception as error:  # noqa: BLE001 - every failure is reported, none stops the run
            self.failed += 1
            message = str(error).strip() or type(error).__name__
            if not isinstance(error, AssertionError):
                message = f"{type(error).__name__}: {message}"
            print(f"FAIL {name}: {message}", flush=True)
            if os.environ.get("CHECK_TRACEBACK"):
                traceback.print_exc()
            return False
        self.passed += 1
        print(f"ok   {name}" + (f" ({detail})" if detail else ""), flush=True)
        return True

    def skip(self, name: str, why: str) -> None:
        print(f"skip {name}: {why}", flush=True)

    def summary(self) -> str:
        """The closing line, `N passed, M failed`."""
        return f"{self.passed} passed, {self.failed} failed"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(method: str, url: str, body: Optional[bytes] = None, headers: Optional[Headers] = None,
         timeout: float = REQUEST_TIMEOUT) -> Tuple[int, object]:
    """Sends one request; returns the status and the JSON body (or the text when it is not JSON)."""
    request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    text = raw.decode("utf-8", errors="replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


class Server:
    """`hookrunner serve` on a free loopback port with its store in `directory`, its output kept
    in a log file there; `env` adds to the environment it inherits (say, the secrets the config
    names as `env:NAME`)."""

    def __init__(self, directory: Path, config: Path, env: Optional[Dict[str, str]] = None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = directory / "server.log"
        self.log = open(self.log_path, "wb")
        command = [str(HOOKRUNNER), "serve", "--config", str(config), "--listen", f"127.0.0.1:{self.port}",
                   "--state-dir", str(directory / "state")]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                        env={**os.environ, **(env or {})})

    def wait_healthy(self) -> str:
        deadline = time.monotonic() + STARTUP_DEADLINE
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited with {self.process.returncode}: {self.log_tail()}")
            try:
                status, _ = http("GET", f"{self.base}/healthz", timeout=2.0)
                if status == 200:
                    return f"port {self.port}"
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"/healthz did not answer 200 within {STARTUP_DEADLINE:.0f}s: {self.log_tail()}")

    def log_tail(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-2000:].strip() or "(no output)"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.log.close()

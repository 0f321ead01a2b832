#!/usr/bin/env python3
"""Helpers for bench/compare.sh (Python standard library only).

Subcommands:
  freeport [N]                       print N free TCP ports on 127.0.0.1, one a line
  body SIZE FILE                     write a GitHub-push-like JSON body of exactly SIZE bytes
  wait URL [--timeout S]             wait until GET URL answers 200 (exit 1 on timeout)
  startup URL [--timeout S] -- CMD   start CMD, time until GET URL answers 200, stop it;
                                     prints `STARTUP_MS <ms>`
  async URL [--also URL]... --body FILE --header 'K: V'... --n N --conc C --done-file F
        [--db SQLITE | --pg POSTGRES_URL]
                                     send N POSTs over C keep-alive connections as fast as
                                     possible (connection k to the k-th URL, round-robin, when
                                     --also adds instances), then wait until F has N lines (one
                                     per finished command) and, with --db or --pg, until N jobs
                                     are `succeeded` in that store (PostgreSQL through `psql`);
                                     prints one `ASYNC_RESULT key=value...` line
  rate URL --body FILE --header 'K: V'... --rate R --seconds S --conc C
                                     send R POSTs a second for S seconds (request i is due at
                                     i/R s; a connection that falls behind sends at once), over
                                     up to C keep-alive connections, reconnecting when the server
                                     closes one; prints one `RATE_RESULT key=value...` line
Every network operation goes to the URL given, which compare.sh keeps on 127.0.0.1, and every
loop is bounded by a count and a timeout.
"""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit


def die(message):
    print(f"benchtool: {message}", file=sys.stderr)
    sys.exit(1)


def split_url(url):
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        die(f"refusing a non-loopback target: {url}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.hostname, parts.port or 80, path


# --- freeport ------------------------------------------------------------------------------------

def cmd_freeport(args):
    count = int(args[0]) if args else 1
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    for s in sockets:
        print(s.getsockname()[1])
    for s in sockets:
        s.close()


# --- body ----------------------------------------------------------------------------------------

def cmd_body(args):
    size, path = int(args[0]), args[1]
    doc = {
        "ref": "refs/heads/main",
        "before": "0000000000000000000000000000000000000000",
        "after": "0123456789abcdef0123456789abcdef01234567",
        "repository": {"full_name": "bench/site", "default_branch": "main"},
        "pusher": {"name": "bench", "email": "bench@example.invalid"},
        "pad": "",
    }
    base = len(json.dumps(doc, separators=(",", ":")).encode())
    if size < base:
        die(f"body size {size} is below the minimum {base}")
    doc["pad"] = "x" * (size - base)
    data = json.dumps(doc, separators=(",", ":")).encode()
    assert len(data) == size, (len(data), size)
    with open(path, "wb") as f:
        f.write(data)


# --- wait / startup ------------------------------------------------------------------------------

def answers_200(host, port, path):
    try:
        with socket.create_connection((host, port), timeout=1) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = s.recv(32)
            return data.startswith(b"HTTP/1.1 200") or data.startswith(b"HTTP/1.0 200")
    except OSError:
        return False


def poll_200(host, port, path, timeout, process=None):
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if answers_200(host, port, path):
            return True
        if process is not None and process.poll() is not None:
            return False
        time.sleep(0.001)
    return False


def opt(args, name, default=None):
    if name in args:
        i = args.index(name)
        value = args[i + 1]
        del args[i:i + 2]
        return value
    return default


def cmd_wait(args):
    timeout = float(opt(args, "--timeout", "30"))
    host, port, path = split_url(args[0])
    sys.exit(0 if poll_200(host, port, path, timeout) else 1)


def cmd_startup(args):
    timeout = float(opt(args, "--timeout", "30"))
    if "--" not in args:
        die("startup needs -- CMD")
    i = args.index("--")
    url, cmd = args[0], args[i + 1:]
    host, port, path = split_url(url)
    start = time.perf_counter()
    process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        ok = poll_200(host, port, path, timeout, process)
        elapsed = (time.perf_counter() - start) * 1000
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    if not ok:
        die(f"{cmd[0]} did not answer 200 on {url} within {timeout}s")
    print(f"STARTUP_MS {elapsed:.1f}")


# --- async ---------------------------------------------------------------------------------------

async def read_response(reader):
    """Reads one HTTP/1.1 response; returns (status, keep_alive)."""
    line = await reader.readline()
    if not line:
        raise ConnectionError("connection closed")
    status = int(line.split()[1])
    length, chunked, close = 0, False, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value:
            chunked = True
        elif name == "connection" and value == "close":
            close = True
    if chunked:
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status, not close


async def send_all(targets, n, conc, timeout):
    """Sends N requests over CONC connections; connection k goes to targets[k % len(targets)],
    each a (host, port, request bytes)."""
    remaining = [n]
    statuses = {}
    last_answer = [0.0]

    async def worker(host, port, request):
        reader = writer = None
        while remaining[0] > 0:
            remaining[0] -= 1
            for attempt in range(3):
                try:
                    if writer is None:
                        reader, writer = await asyncio.open_connection(host, port)
                    writer.write(request)
                    status, keep = await read_response(reader)
                    break
                except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError):
                    if writer is not None:
                        writer.close()
                    reader = writer = None
                    if attempt == 2:
                        status, keep = 0, False
            statuses[status] = statuses.get(status, 0) + 1
            last_answer[0] = time.perf_counter()
            if not keep and writer is not None:
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    workers = (worker(*targets[k % len(targets)]) for k in range(conc))
    await asyncio.wait_for(asyncio.gather(*workers), timeout)
    return statuses, last_answer[0]


def count_lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def count_succeeded(db):
    query = "SELECT count(*) FROM jobs WHERE status = 'succeeded'"
    try:
        import sqlite3
    except ImportError:  # a Python built without _sqlite3: use the sqlite3 program
        result = subprocess.run(["sqlite3", f"file:{db}?mode=ro", query],
                                capture_output=True, text=True, check=False)
        try:
            return int(result.stdout.strip())
        except ValueError:
            return -1
    try:
        connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return connection.execute(query).fetchone()[0]
        finally:
            connection.close()
    except sqlite3.Error:
        return -1


class PostgresCounter:
    """Counts succeeded jobs in a PostgreSQL store through one `psql` kept open, so that polling
    does not start a process each time (which would slow the server it measures)."""

    def __init__(self, url):
        self.process = subprocess.Popen(
            ["psql", "-X", "-q", "-At", url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True,
            env=dict(os.environ, PGOPTIONS="-c client_min_messages=warning"))

    def __call__(self):
        # The `\echo` line ends every answer, so a failed query cannot leave readline waiting.
        self.process.stdin.write(
            "SELECT count(*) FROM jobs WHERE status = 'succeeded';\n\\echo .\n")
        self.process.stdin.flush()
        count = -1
        while True:
            line = self.process.stdout.readline()
            if line in ("", ".\n"):
                return count
            try:
                count = int(line)
            except ValueError:
                pass

    def close(self):
        self.process.stdin.close()
        self.process.wait(10)


def cmd_async(args):
    body_file = opt(args, "--body")
    n = int(opt(args, "--n", "2000"))
    conc = int(opt(args, "--conc", "16"))
    done_file = opt(args, "--done-file")
    db = opt(args, "--db")
    pg = opt(args, "--pg")
    timeout = float(opt(args, "--timeout", "120"))
    headers = []
    while "--header" in args:
        headers.append(opt(args, "--header"))
    urls = [args[0]]
    while "--also" in args:
        urls.append(opt(args, "--also"))
    with open(body_file, "rb") as f:
        body = f.read()
    targets = []
    for url in urls:
        host, port, path = split_url(url)
        head = f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        head += "".join(h + "\r\n" for h in headers)
        head += f"Content-Length: {len(body)}\r\n\r\n"
        targets.append((host, port, head.encode() + body))
    count_store = None
    if db:
        def count_store():
            return count_succeeded(db)
    elif pg:
        count_store = PostgresCounter(pg)

    start = time.perf_counter()
    statuses, last_answer = asyncio.run(send_all(targets, n, conc, timeout))
    accepted = last_answer - start
    accepted_ok = sum(v for k, v in statuses.items() if 200 <= k < 300)

    deadline = start + timeout
    ran_at = None
    while time.perf_counter() < deadline:
        if count_lines(done_file) >= accepted_ok:
            ran_at = time.perf_counter() - start
            break
        time.sleep(0.002)
    succeeded_at = None
    if count_store:
        while time.perf_counter() < deadline:
            if count_store() >= accepted_ok:
                succeeded_at = time.perf_counter() - start
                break
            time.sleep(0.01)
        if pg:
            count_store.close()
    fields = {
        "n": n,
        "conc": conc,
        "ok": accepted_ok,
        "statuses": ",".join(f"{k}:{v}" for k, v in sorted(statuses.items())),
        "accepted_s": f"{accepted:.3f}",
        "accept_rps": f"{accepted_ok / accepted:.1f}" if accepted > 0 else "nan",
        "ran_s": f"{ran_at:.3f}" if ran_at else "timeout",
        "ran_per_s": f"{accepted_ok / ran_at:.1f}" if ran_at else "nan",
        "lines": count_lines(done_file),
        "instances": len(targets),
    }
    if count_store:
        fields["succeeded_s"] = f"{succeeded_at:.3f}" if succeeded_at else "timeout"
        fields["succeeded_per_s"] = f"{accepted_ok / succeeded_at:.1f}" if succeeded_at else "nan"
    print("ASYNC_RESULT " + " ".join(f"{k}={v}" for k, v in fields.items()))
    if accepted_ok != n or ran_at is None or (count_store and succeeded_at is None):
        sys.exit(1)


# --- rate --------------------------------------------------------------------------------------

async def send_at_rate(host, port, request, rate, seconds, conc, timeout):
    """Sends rate * seconds requests, request i due at start + i / rate, over CONC connections;
    returns (statuses, elapsed seconds, seconds the latest request started behind schedule)."""
    total = int(rate * seconds)
    next_index = [0]
    statuses = {}
    worst_lag = [0.0]
    start = time.perf_counter()

    async def worker():
        reader = writer = None
        while next_index[0] < total:
            i = next_index[0]
            next_index[0] += 1
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                worst_lag[0] = max(worst_lag[0], -delay)
            status, keep = 0, False
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                writer.write(request)
                status, keep = await read_response(reader)
            except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError):
                pass
            statuses[status] = statuses.get(status, 0) + 1
            if not keep and writer is not None:
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(conc))), timeout)
    return statuses, time.perf_counter() - start, worst_lag[0]


def cmd_rate(args):
    body_file = opt(args, "--body")
    rate = float(opt(args, "--rate", "2000"))
    seconds = float(opt(args, "--seconds", "10"))
    conc = int(opt(args, "--conc", "16"))
    headers = []
    while "--header" in args:
        headers.append(opt(args, "--header"))
    with open(body_file, "rb") as f:
        body = f.read()
    host, port, path = split_url(args[0])
    head = f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
    head += "".join(h + "\r\n" for h in headers)
    head += f"Content-Length: {len(body)}\r\n\r\n"
    statuses, elapsed, lag = asyncio.run(
        send_at_rate(host, port, head.encode() + body, rate, seconds, conc, seconds * 3 + 30))
    sent = sum(statuses.values())
    fields = {
        "sent": sent,
        "seconds": f"{elapsed:.3f}",
        "rps": f"{sent / elapsed:.1f}",
        "max_lag_s": f"{lag:.3f}",
        "statuses": ",".join(f"{k}:{v}" for k, v in sorted(statuses.items())),
    }
    for code in (202, 429):
        fields[f"n{code}"] = statuses.get(code, 0)
    print("RATE_RESULT " + " ".join(f"{k}={v}" for k, v in fields.items()))


def main():
    if len(sys.argv) < 2:
        die(__doc__)
    command, args = sys.argv[1], sys.argv[2:]
    handlers = {
        "freeport": cmd_freeport,
        "body": cmd_body,
        "wait": cmd_wait,
        "startup": cmd_startup,
        "async": cmd_async,
        "rate": cmd_rate,
    }
    if command not in handlers:
        die(f"unknown subcommand {command}")
    handlers[command](args)


if __name__ == "__main__":
    main()

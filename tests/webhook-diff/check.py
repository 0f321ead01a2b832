#!/usr/bin/env python3
"""adnanh/webhook and hookrunner side by side, on the same hooks file and the same requests.

For each case under corpus/ (a folder with the adnanh hooks file, `hooks.json` or, for
`webhook -template`, `hooks.json.tmpl`, and `requests.json`), this starts Debian's `webhook` on
the file, and `hookrunner serve` on what `hookrunner import-webhook --secrets inline` makes of it,
sends each request to both, and compares: the status, the body where hookrunner promises the same
(`response-message`, the command's output), the headers the hook sets, whether the command ran,
and what it saw (arguments, the variables the hook defines, the files it passes), as recorded by
recorder.py.

A case's `requests.json`: `secrets` (name to value, for signing), `env` (the servers' extra
environment, which a `-template` file reads), and `requests`, each with `name`, `path` (the hook
id), optional `method`, `query` and `headers`, a body as `json`, `form`, `multipart` (parts with
`name`, `value`, optional `filename` and `content_type`) or `body` (text), `sign` (a list of
[header, algorithm, prefix, secret name]) and `triggers` (whether webhook runs the command). The
hooks file names the command `@RECORDER@`.

A difference fails the run unless its code is a row of the README's table; a row that no case shows
any more fails it too. Secrets are never printed.

Environment: WEBHOOK_BIN (default /usr/bin/webhook), HOOKRUNNER_BIN (default target/debug/hookrunner),
DIFF_FULL=1 to print values whole rather than cut at 160 characters.
Arguments: case names, to run only those (the stale-row check is then skipped).
"""
import hashlib
import hmac
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")
WEBHOOK = os.environ.get("WEBHOOK_BIN", "/usr/bin/webhook")
HOOKRUNNER = os.environ.get("HOOKRUNNER_BIN", os.path.join(ROOT, "target", "debug", "hookrunner"))

START_DEADLINE = 20.0
RUN_DEADLINE = 10.0


# ---------------------------------------------------------------- the allow list


# The README's section that lists the differences; its table is the allow list.
README_SECTION = "### Where a converted hook still differs from webhook"


def allowed_codes():
    """The codes of the README's table of differences: the first cell of each row, in backticks."""
    codes = {}
    with open(os.path.join(HERE, "..", "..", "README.md"), encoding="utf-8") as file:
        text = file.read()
    if README_SECTION not in text:
        sys.exit(f"error: README.md has no section `{README_SECTION}`")
    section = text.split(README_SECTION, 1)[1].split("\n#", 1)[0]
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 2:
            continue
        code = re.fullmatch(r"`([a-z0-9][a-z0-9-]*)`", cells[0])
        if code:
            codes[code.group(1)] = cells[1]
    return codes


# ---------------------------------------------------------------- processes and HTTP


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(what, condition, deadline=START_DEADLINE):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not happen within {deadline:.0f}s")


def send(port, request, body, headers):
    """One request; returns (status, headers as a lower-cased dict, body text)."""
    url = f"http://127.0.0.1:{port}/hooks/{request['path']}"
    if request.get("query"):
        url += "?" + request["query"]
    message = urllib.request.Request(url, data=body, method=request.get("method", "POST"))
    for name, value in headers.items():
        message.add_header(name, value)
    try:
        with urllib.request.urlopen(message, timeout=30) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read().decode("utf-8", "replace")


class Server:
    """A server process with its log kept in a file, stopped on `stop`."""

    def __init__(self, name, argv, env, port, ready_path, log_path):
        self.name = name
        self.port = port
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.process = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until(f"{name} answering on port {port}", lambda: self.ready(ready_path))
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"{name} did not start; its log:\n{self.tail()}")

    def ready(self, path):
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}; its log:\n{self.tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    def tail(self):
        self.log.flush()
        with open(self.log_path, "rb") as file:
            return file.read()[-3000:].decode("utf-8", "replace")

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


# ---------------------------------------------------------------- requests


def build_body(request):
    """The body bytes and the headers that describe it."""
    headers = {}
    if "json" in request:
        body = json.dumps(request["json"]).encode()
        headers["Content-Type"] = "application/json"
    elif "form" in request:
        body = urllib.parse.urlencode(request["form"]).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif "multipart" in request:
        boundary = "----hookrunner-diff-boundary"
        parts = []
        for part in request["multipart"]:
            disposition = f'form-data; name="{part["name"]}"'
            if "filename" in part:
                disposition += f'; filename="{part["filename"]}"'
            lines = [f"--{boundary}", f"Content-Disposition: {disposition}"]
            if "content_type" in part:
                lines.append(f"Content-Type: {part['content_type']}")
            parts.append("\r\n".join(lines) + "\r\n\r\n" + part["value"] + "\r\n")
        body = ("".join(parts) + f"--{boundary}--\r\n").encode()
        headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    else:
        body = request.get("body", "").encode()
    headers.update(request.get("headers", {}))
    return body, headers


def sign(request, body, secrets, headers):
    """Adds each signature header the request asks for: [header, algorithm, prefix, secret name]."""
    for header, algorithm, prefix, secret_name in request.get("sign", []):
        digest = hmac.new(secrets[secret_name].encode(), body, getattr(hashlib, algorithm)).hexdigest()
        headers[header] = prefix + digest


# ---------------------------------------------------------------- what the command saw


class Records:
    """The files recorder.py writes into one folder, read in the order they were written."""

    def __init__(self, folder):
        self.folder = folder
        self.seen = 0

    def names(self):
        return sorted(name for name in os.listdir(self.folder) if name.endswith(".json"))

    def next(self, deadline):
        """The next record, waiting up to `deadline` seconds; None when none came."""
        try:
            names = wait_until("a record", lambda: len(self.names()) > self.seen and self.names(), deadline)
        except TimeoutError:
            return None
        with open(os.path.join(self.folder, names[self.seen]), encoding="utf-8") as file:
            record = json.load(file)
        self.seen += 1
        return record

    def extra(self):
        return len(self.names()) - self.seen


def hook_names(hook):
    """The variables a hook defines, as webhook names them, and those that hold a file's path."""
    env = [item.get("envname") or "HOOK_" + item.get("name", "") for item in hook.get("pass-environment-to-command") or []]
    # webhook upper-cases the name for a file, and not for a variable.
    files = [item.get("envname") or "HOOK_" + item.get("name", "").upper() for item in hook.get("pass-file-to-command") or []]
    return env, files


def normalise(text):
    """The client's port differs from one connection to the next, and from one server to the other."""
    return re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)


def seen_by_command(record, hook):
    env_names, file_names = hook_names(hook)
    env = {name: normalise(record["env"][name]) for name in env_names if name in record["env"]}
    files = {name: record["files"].get(name) for name in file_names if name in record["env"]}
    return {"argv": [normalise(argument) for argument in record["argv"]], "env": env, "files": files}


# ---------------------------------------------------------------- comparing


def job_stdout(body):
    """hookrunner's answer with output is its job as JSON; the output is its `stdout`."""
    try:
        return json.loads(body).get("stdout")
    except (ValueError, AttributeError):
        return None


def is_json_object(text):
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


WEBHOOK_MISMATCH = "Hook rules were not satisfied."
WEBHOOK_RULE_ERROR = "Error occurred while evaluating hook rules."
WEBHOOK_COMMAND_ERROR = "Error occurred while executing the hook's command. Please check your logs for more details."
# Differences that mean hookrunner refused the request where webhook did not, or ran nothing for
# another reason: they explain the body and the command not running as well.
REFUSALS = {"signature-401", "missing-value-422", "post-only", "bad-body-400"}


def classify_status(hook, request, webhook, hookrunner):
    """The code that explains a different status, or None."""
    (wh_status, _, wh_body, wh_seen), (hr_status, _, _, hr_seen) = webhook, hookrunner
    ran_under_webhook_only = wh_seen is not None and hr_seen is None
    if wh_status == 200 and hr_status == 202 and wh_seen and hr_seen:
        if not hook.get("include-command-output-in-response") and not hook.get("success-http-response-code"):
            return "async-202"
    if hr_status == 401 and wh_seen is None and (wh_status, wh_body) in ((500, WEBHOOK_RULE_ERROR), (200, WEBHOOK_MISMATCH)):
        return "signature-401"
    if hr_status == 400 and wh_seen is None and hr_seen is None and is_json_object(hookrunner[2]) and json.loads(hookrunner[2]).get("error") == "bad_body":
        return "bad-body-400"
    if wh_status == 200 and hr_status == 422 and ran_under_webhook_only:
        return "missing-value-422"
    if wh_status == 200 and hr_status == 405 and ran_under_webhook_only and not hook.get("http-methods"):
        return "post-only"
    return None


def classify_body(hook, webhook, hookrunner):
    """The code that explains a different body at the same status, or None."""
    (wh_status, _, wh_body, _), (hr_status, _, hr_body, _) = webhook, hookrunner
    include = hook.get("include-command-output-in-response")
    if wh_body == WEBHOOK_MISMATCH and is_json_object(hr_body) and json.loads(hr_body).get("status") == "skipped":
        return "mismatch-json-body"
    if include and wh_status == hr_status == 500 and wh_body == WEBHOOK_COMMAND_ERROR and not hook.get("include-command-output-in-response-on-error") and job_stdout(hr_body) is not None:
        return "output-on-error-shown"
    if include and job_stdout(hr_body) == wh_body:
        return "output-in-job-json"
    if wh_body == "" and not hook.get("response-message") and is_json_object(hr_body):
        return "json-body"
    return None


def classify_value(webhook_value, hookrunner_value):
    """The code that explains a value the command saw differently, or None."""
    try:
        wh, hr = json.loads(webhook_value), json.loads(hookrunner_value)
    except (TypeError, ValueError):
        return None
    if not (isinstance(wh, dict) and isinstance(hr, dict)):
        return None
    if wh == hr:
        return "json-key-order"
    canonical = {name.lower(): value for name, value in wh.items()}
    if {name: value for name, value in hr.items() if name != "host"} == canonical:
        return "headers-json-form"
    return None


def compare(hook, request, webhook, hookrunner):
    """Each difference as (code or None, words)."""
    differences = []
    (wh_status, wh_headers, wh_body, wh_seen), (hr_status, hr_headers, hr_body, hr_seen) = webhook, hookrunner
    status_code = None
    if wh_status != hr_status:
        status_code = classify_status(hook, request, webhook, hookrunner)
        differences.append((status_code, f"status: webhook {wh_status}, hookrunner {hr_status}"))
    refused = status_code in REFUSALS
    if wh_body != hr_body:
        code = status_code if refused else classify_body(hook, webhook, hookrunner)
        differences.append((code, f"body: webhook {shorten(wh_body)}, hookrunner {shorten(hr_body)}"))
    for header in hook.get("response-headers") or []:
        name = header["name"].lower()
        if wh_headers.get(name) != hr_headers.get(name):
            code = None
            if wh_headers.get(name) is None and hr_headers.get(name) == header["value"] and wh_seen is None:
                code = "headers-on-every-answer"
            differences.append((code, f"header {header['name']}: webhook {wh_headers.get(name)!r}, hookrunner {hr_headers.get(name)!r}"))
    if (wh_seen is None) != (hr_seen is None):
        words = "the command ran under webhook only" if hr_seen is None else "the command ran under hookrunner only"
        differences.append((status_code if refused and hr_seen is None else None, words))
    elif wh_seen is not None:
        if len(wh_seen["argv"]) != len(hr_seen["argv"]):
            differences.append((None, f"argv: webhook {shorten(json.dumps(wh_seen['argv']))}, hookrunner {shorten(json.dumps(hr_seen['argv']))}"))
        else:
            for index, (wh, hr) in enumerate(zip(wh_seen["argv"], hr_seen["argv"]), start=1):
                if wh != hr:
                    differences.append((classify_value(wh, hr), f"argument {index}: webhook {shorten(wh)}, hookrunner {shorten(hr)}"))
        for part in ("env", "files"):
            for name in sorted(set(wh_seen[part]) | set(hr_seen[part])):
                wh, hr = wh_seen[part].get(name), hr_seen[part].get(name)
                if wh != hr:
                    differences.append((classify_value(wh, hr), f"{'variable' if part == 'env' else 'file in'} {name}: webhook {shorten(str(wh))}, hookrunner {shorten(str(hr))}"))
    return differences


def sensitive(spec, request, headers):
    """What must never be printed: the case's secrets, and the signatures and tokens sent."""
    values = set(spec.get("secrets", {}).values()) | set(spec.get("env", {}).values())
    values |= {headers[header] for header, _, _, _ in request.get("sign", [])}
    values |= {value for name, value in headers.items() if re.search(r"token|signature|secret|auth", name, re.I)}
    # Longest first, so a signature is hidden whole before the secret inside any longer value.
    return sorted((value for value in values if value), key=len, reverse=True)


# The sensitive values of the request being compared; `shorten` and `redact` hide them.
HIDDEN = []


def redact(words):
    for value in HIDDEN:
        words = words.replace(value, "<hidden>")
    return words


def shorten(text, limit=160):
    text = redact(text)
    if os.environ.get("DIFF_FULL"):
        limit = 100000
    text = text.replace("\n", "\\n")
    return repr(text if len(text) <= limit else text[:limit] + "...")


# ---------------------------------------------------------------- one case


def start_servers(case, folder, work):
    """webhook and hookrunner on the case's hooks file; returns (servers, the hooks as adnanh reads them)."""
    template = os.path.exists(os.path.join(folder, "hooks.json.tmpl"))
    source_name = "hooks.json.tmpl" if template else "hooks.json"
    with open(os.path.join(CORPUS, case, "requests.json"), encoding="utf-8") as file:
        spec = json.load(file)
    servers, records = {}, {}
    base_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": work, "LANG": "C.UTF-8"}
    base_env.update(spec.get("env", {}))
    for side in ("webhook", "hookrunner"):
        out = os.path.join(work, side, "records")
        os.makedirs(out)
        recorder = os.path.join(work, side, "recorder.py")
        with open(os.path.join(HERE, "recorder.py"), encoding="utf-8") as file:
            text = file.read().replace("@OUT_DIR@", out)
        with open(recorder, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(recorder, 0o755)
        with open(os.path.join(folder, source_name), encoding="utf-8") as file:
            hooks_text = file.read().replace("@RECORDER@", recorder)
        hooks_path = os.path.join(work, side, source_name.replace(".tmpl", ""))
        with open(hooks_path, "w", encoding="utf-8") as file:
            file.write(hooks_text)
        records[side] = Records(out)
        port = free_port()
        log_path = os.path.join(work, side, "server.log")
        if side == "webhook":
            argv = [WEBHOOK, "-hooks", hooks_path, "-port", str(port), "-ip", "127.0.0.1", "-verbose"]
            if template:
                argv.append("-template")
            servers[side] = Server(side, argv, base_env, port, "/hooks/", log_path)
        else:
            converted = subprocess.run([HOOKRUNNER, "import-webhook", "--secrets", "inline", hooks_path], capture_output=True, text=True, env=base_env)
            if converted.returncode != 0:
                raise RuntimeError(f"import-webhook failed:\n{converted.stderr}")
            config = os.path.join(work, side, "hooks.yaml")
            with open(config, "w", encoding="utf-8") as file:
                file.write(converted.stdout)
            state = os.path.join(work, side, "state")
            argv = [HOOKRUNNER, "serve", "--config", config, "--listen", f"127.0.0.1:{port}", "--state-dir", state]
            servers[side] = Server(side, argv, base_env, port, "/healthz", log_path)
    if template:
        # What webhook itself reads: the file rendered with the case's environment.
        hooks = json.loads(re.sub(r'\{\{\s*getenv\s+"(\w+)"[^}]*\}\}', lambda m: base_env.get(m.group(1), ""), hooks_text))
    else:
        hooks = json.loads(hooks_text)
    return spec, servers, records, {hook["id"]: hook for hook in hooks}


def run_case(case):
    """Every request of the case; returns a list of (request name, code or None, words)."""
    folder = os.path.join(CORPUS, case)
    work = tempfile.mkdtemp(prefix=f"webhook-diff-{case}-")
    servers = {}
    found = []
    try:
        spec, servers, records, hooks = start_servers(case, folder, work)
        secrets = spec.get("secrets", {})
        for request in spec["requests"]:
            hook = hooks[request["path"].split("?")[0]]
            body, headers = build_body(request)
            sign(request, body, secrets, headers)
            answers = {}
            for side in ("webhook", "hookrunner"):
                if records[side].extra():
                    # Left over from an earlier request that was not expected to run anything.
                    raise RuntimeError(f"a command ran under {side} that no earlier request was expected to run")
                sent_headers = dict(headers)
                # A new delivery id for each request and server, so hookrunner never sees a redelivery.
                if "X-GitHub-Event" in sent_headers:
                    sent_headers["X-GitHub-Delivery"] = str(uuid.uuid4())
                status, response_headers, response_body = send(servers[side].port, request, body, sent_headers)
                # A run is waited for only where the answer says one started: a 2xx, or a failed
                # command's 500 when the output is included. A run the answer does not announce
                # shows up as a record too many, found below or at the end of the case.
                announced = 200 <= status < 300 or (status == 500 and hook.get("include-command-output-in-response"))
                record = records[side].next(RUN_DEADLINE) if request["triggers"] and announced else None
                seen = seen_by_command(record, hook) if record else None
                answers[side] = (status, response_headers, response_body, seen)
            problems = [(None, f"the command {'did not run' if request['triggers'] else 'ran'} under {side}, the case says it {'should' if request['triggers'] else 'should not'}")
                        for side in ("webhook",) if (answers[side][3] is not None) != request["triggers"]]
            HIDDEN[:] = sensitive(spec, request, headers)
            problems += compare(hook, request, answers["webhook"], answers["hookrunner"])
            found.extend((request["name"], code, redact(words)) for code, words in problems)
            if not problems:
                found.append((request["name"], "", "same"))
        for side in ("webhook", "hookrunner"):
            if records[side].extra():
                found.append(("(after the last request)", None, f"{records[side].extra()} more command run(s) under {side} than requests that trigger"))
    except (RuntimeError, TimeoutError, OSError, ValueError, KeyError) as error:
        found.append(("(setup)", None, f"{type(error).__name__}: {error}"))
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return found


def main(argv):
    codes = allowed_codes()
    cases = argv or sorted(name for name in os.listdir(CORPUS) if os.path.isdir(os.path.join(CORPUS, name)))
    failures, seen_codes = 0, set()
    started = time.monotonic()
    for case in cases:
        for request_name, code, words in run_case(case):
            if code == "":
                print(f"ok    {case} / {request_name}: same")
            elif code in codes:
                seen_codes.add(code)
                print(f"ok    {case} / {request_name}: listed difference `{code}`: {words}")
            else:
                failures += 1
                why = f"`{code}` is not in the README's table" if code else "no listed difference explains it"
                print(f"FAIL  {case} / {request_name}: {words} ({why})")
    if not argv:
        for code in sorted(set(codes) - seen_codes):
            failures += 1
            print(f"FAIL  the README's table lists `{code}`, which no case shows any more: remove the row or add the case")
    print(f"{len(cases)} cases, {failures} failure(s), {time.monotonic() - started:.1f}s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

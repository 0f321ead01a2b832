"""Cross-checks hookrunner's webhook signatures against the providers' own SDKs.

For Stripe (`stripe`), Standard Webhooks (`standardwebhooks`), Slack (`slack_sdk`) and GitHub
(`@octokit/webhooks-methods`, through tests/sdk/octokit.mjs), this starts `hookrunner serve` on a
free loopback port and checks that:
  - a request signed by the SDK is accepted, and ones signed with another secret, too long ago,
    or whose body changed after signing are refused with the right error;
  - `hookrunner sign` prints the same header values as the SDK, and the SDK's own verify
    function accepts them;
  - `hookrunner send` exits 0 with the right secret and 1 with a wrong one;
and that a notification of a failed job (`notify: webhook`), sent to a receiver here that answers
503 once, verifies with `standardwebhooks` on both tries, with the same `webhook-id`.
It prints one line per check and ends with `N passed, M failed`; it exits 1 if any failed.
Run it through tests/sdk/run.sh, which installs the SDKs and builds hookrunner first.
Only the standard library is used besides the three Python SDKs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import slack_sdk.signature
import standardwebhooks
import stripe

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from harness import HOOKRUNNER, REQUEST_TIMEOUT, ROOT, STARTUP_DEADLINE, Headers, Results, Server, http  # noqa: E402

OCTOKIT_SCRIPT = ROOT / "tests" / "sdk" / "octokit.mjs"
OLD = 10 * 60  # the "old timestamp" checks sign this many seconds in the past


def expect_equal(what: str, expected: object, actual: object) -> None:
    if expected != actual:
        raise AssertionError(f"{what} differs: expected {expected!r}, got {actual!r}")


# ---------------------------------------------------------------------------------------------
# The config, the notification receiver and the hookrunner CLI


NOTIFY_SECRET = "whsec_" + base64.b64encode(b"hookrunner sdk notify key 012345").decode()


def write_config(directory: Path, providers: List["Provider"], receiver: "Receiver") -> Path:
    """One hook per provider, each answering once its command (`true`) has run; and `announce`,
    whose command fails and whose end is announced to `receiver`."""
    lines = ["hooks:"]
    for provider in providers:
        lines += [
            f"  - id: {provider.hook}",
            f"    signature: {{{provider.name}: {{secret: {json.dumps(provider.secret)}}}}}",
            '    run: {command: ["true"]}',
        ]
    lines += [
        "  - id: announce",
        "    signature: none",
        '    run: {command: ["false"]}',
        "    notify:",
        "      - on: [failed]",
        "        backoff: 200ms",
        f"        webhook: {{url: {json.dumps(receiver.url)}, secret: {json.dumps(NOTIFY_SECRET)}}}",
    ]
    path = directory / "hooks.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Receiver:
    """An HTTP server on a free loopback port that records each POST (headers, body) and answers
    503 to the first, 200 to the rest."""

    def __init__(self) -> None:
        self.seen: List[Tuple[Headers, bytes]] = []
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the name http.server calls)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                seen.append(({name.lower(): value for name, value in self.headers.items()}, body))
                self.send_response(503 if len(seen) == 1 else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hookrunner"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + STARTUP_DEADLINE
        while len(self.seen) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.seen)} of {count} notification tries arrived")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.shutdown()


def check_notification(results: Results, server: "Server", receiver: Receiver) -> None:
    def verifies() -> str:
        status, answer = http("POST", f"{server.base}/hooks/announce", b"{}", {"Content-Type": "application/json"})
        if not isinstance(answer, dict) or "job_id" not in answer:
            raise AssertionError(f"the trigger answered {status}: {answer}")
        receiver.wait_for(2)
        ids = set()
        for headers, body in receiver.seen[:2]:
            event = standardwebhooks.Webhook(NOTIFY_SECRET).verify(body, headers)
            expect_equal("type", "job.failed", event["type"])
            expect_equal("data.job_id", answer["job_id"], event["data"]["job_id"])
            ids.add(headers["webhook-id"])
        expect_equal("webhook-id on both tries", {f"msg_{answer['job_id']}_0"}, ids)
        return "2 tries, both verified by standardwebhooks.Webhook.verify"

    def refused_with_another_key() -> str:
        headers, body = receiver.seen[0]
        other = "whsec_" + base64.b64encode(b"another key, not the right one!!").decode()
        try:
            standardwebhooks.Webhook(other).verify(body, headers)
        except standardwebhooks.webhooks.WebhookVerificationError:
            return "refused"
        raise AssertionError("verified with another key")

    if results.run("notify webhook: a failed job's notification verifies with standardwebhooks", verifies):
        results.run("notify webhook: standardwebhooks refuses it with another key", refused_with_another_key)


def hookrunner(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(HOOKRUNNER), *args], capture_output=True, text=True, timeout=REQUEST_TIMEOUT)


def hookrunner_sign(provider: str, secret: str, body: bytes, timestamp: int, msg_id: str) -> List[Tuple[str, str]]:
    """`hookrunner sign`'s output as (name, value) pairs, in the order printed."""
    result = hookrunner("sign", "--provider", provider, "--secret", secret, "--data", body.decode(),
                        "--timestamp", str(timestamp), "--id", msg_id)
    if result.returncode != 0:
        raise AssertionError(f"hookrunner sign exited {result.returncode}: {result.stderr.strip()}")
    pairs = []
    for line in result.stdout.splitlines():
        name, separator, value = line.partition(": ")
        if not separator:
            raise AssertionError(f"hookrunner sign printed a line that is not `Name: value`: {line!r}")
        pairs.append((name, value))
    return pairs


def hookrunner_send(url: str, provider: str, secret: str, body: bytes) -> subprocess.CompletedProcess:
    return hookrunner("send", url, "--provider", provider, "--secret", secret, "--data", body.decode())


# ---------------------------------------------------------------------------------------------
# The providers: how each SDK signs and verifies


@dataclass
class Provider:
    name: str  # hookrunner's provider name, also the hook id
    sdk: str  # the SDK used, for the check names
    secret: str
    wrong_secret: str
    body: bytes
    tamper: Tuple[bytes, bytes]  # (old, new): the change made to the body after signing
    content_type: str
    extra_headers: Headers  # what the provider sends besides the signature
    sign_headers: List[str]  # the headers `hookrunner sign --id` prints, in order
    compare: Dict[str, str]  # header -> where its expected value comes from; must be equal exactly
    has_timestamp: bool
    # (secret, body, unix time, message id) -> the signature headers, made by the SDK
    sdk_sign: Callable[[str, bytes, int, str], Headers] = field(repr=False)
    # (secret, body, headers) -> whether the SDK's own verify function accepts them
    sdk_verify: Callable[[str, bytes, Headers], bool] = field(repr=False)

    @property
    def hook(self) -> str:
        return self.name


def stripe_sign(secret: str, body: bytes, timestamp: int, _msg_id: str) -> Headers:
    # The SDK's own test helper: HMAC-SHA256 via WebhookSignature._compute_signature.
    header = stripe.WebhookSignature.generate_signature_header(body.decode("utf-8"), secret, timestamp=timestamp)
    return {"Stripe-Signature": header}


def stripe_verify(secret: str, body: bytes, headers: Headers) -> bool:
    try:
        event = stripe.Webhook.construct_event(body, headers.get("Stripe-Signature"), secret)
    except stripe.SignatureVerificationError:
        return False
    return event.id == json.loads(body)["id"]


def standard_sign(secret: str, body: bytes, timestamp: int, msg_id: str) -> Headers:
    when = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    signature = standardwebhooks.Webhook(secret).sign(msg_id, when, body.decode("utf-8"))
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


def standard_verify(secret: str, body: bytes, headers: Headers) -> bool:
    try:
        standardwebhooks.Webhook(secret).verify(body, headers)
    except standardwebhooks.webhooks.WebhookVerificationError:
        return False
    return True


def slack_sign(secret: str, body: bytes, timestamp: int, _msg_id: str) -> Headers:
    verifier = slack_sdk.signature.SignatureVerifier(secret)
    signature = verifier.generate_signature(timestamp=str(timestamp), body=body)
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": signature}


def slack_verify(secret: str, body: bytes, headers: Headers) -> bool:
    verifier = slack_sdk.signature.SignatureVerifier(secret)
    return verifier.is_valid(body=body, timestamp=headers.get("X-Slack-Request-Timestamp"),
                             signature=headers.get("X-Slack-Signature"))


def octokit(*args: str, body: bytes) -> subprocess.CompletedProcess:
    node = shutil.which("node")
    return subprocess.run([node, str(OCTOKIT_SCRIPT), *args], input=body, capture_output=True,
                          timeout=REQUEST_TIMEOUT)


def github_sign(secret: str, body: bytes, _timestamp: int, msg_id: str) -> Headers:
    result = octokit("sign", secret, body=body)
    if result.returncode != 0:
        raise AssertionError(f"octokit sign exited {result.returncode}: {result.stderr.decode().strip()}")
    # octokit signs only SHA-256; GitHub's legacy SHA-1 header is made with the standard library.
    sha1 = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
    return {"X-Hub-Signature-256": result.stdout.decode().strip(), "X-Hub-Signature": f"sha1={sha1}",
            "X-GitHub-Delivery": msg_id}


def github_verify(secret: str, body: bytes, headers: Headers) -> bool:
    result = octokit("verify", secret, headers.get("X-Hub-Signature-256", ""), body=body)
    if result.returncode not in (0, 1):
        raise AssertionError(f"octokit verify exited {result.returncode}: {result.stderr.decode().strip()}")
    return result.stdout.decode().strip() == "true"


def json_body(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def providers() -> List[Provider]:
    now = int(time.time())
    stripe_body = json_body({
        "id": "evt_3PqYl2LkdIwHu7ix0xyzAbCd", "object": "event", "api_version": "2024-06-20",
        "created": now, "livemode": False, "pending_webhooks": 1, "type": "payment_intent.succeeded",
        "request": {"id": None, "idempotency_key": None},
        "data": {"object": {"id": "pi_3PqYl2LkdIwHu7ix0QWERTYU", "object": "payment_intent", "amount": 2000,
                            "currency": "eur", "status": "succeeded", "description": "Café crème ×2",
                            "metadata": {"order_id": "6735"}}},
    })
    standard_body = json_body({
        "type": "invoice.paid", "timestamp": "2024-06-20T12:00:00.000Z",
        "data": {"invoice_id": "inv_2Qx9", "customer": "Zoë Müller", "amount": 2000, "currency": "EUR"},
    })
    slack_body = (
        "token=gIkuvaNzQIHg97ATvDxqgjtO&team_id=T0001&team_domain=example&enterprise_id=E0001"
        "&enterprise_name=Globular%20Construct%20Inc&channel_id=C2147483705&channel_name=test"
        "&user_id=U2147483697&user_name=Steve&command=%2Fdeploy&text=site%20amount%3D2000"
        "&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2F1234%2F5678"
        "&trigger_id=13345224609.738474920.8088930838d88f008e0&api_app_id=A123456"
    ).encode()
    github_body = json_body({
        "ref": "refs/heads/main", "before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        "after": "59b20b8d5c6ff8d09518454d4dd8b7b30f095ab5",
        "repository": {"id": 2000, "full_name": "octo-org/site", "private": False},
        "pusher": {"name": "octocat", "email": "octocat@github.com"},
        "head_commit": {"id": "59b20b8d5c6ff8d09518454d4dd8b7b30f095ab5", "message": "Fix the naïve café menu ☕"},
    })
    return [
        Provider("stripe", "stripe", "whsec_3f5c9a0e1b2d4c6e8a0b1c2d3e4f5a6b", "whsec_0a1b2c3d4e5f60718293a4b5c6d7e8f9",
                 stripe_body, (b'"amount":2000', b'"amount":9999'), "application/json; charset=utf-8",
                 {"User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"},
                 ["Stripe-Signature"],
                 {"Stripe-Signature": "stripe.WebhookSignature.generate_signature_header"},
                 True, stripe_sign, stripe_verify),
        Provider("standard", "standardwebhooks", "whsec_" + base64.b64encode(b"hookrunner sdk check key 0123456").decode(),
                 "whsec_" + base64.b64encode(b"another key, not the hook's one").decode(),
                 standard_body, (b'"amount":2000', b'"amount":9999'), "application/json",
                 {"User-Agent": "Svix-Webhooks/1.24"},
                 ["webhook-id", "webhook-timestamp", "webhook-signature"],
                 {"webhook-id": "the --id given", "webhook-timestamp": "the --timestamp given",
                  "webhook-signature": "standardwebhooks.Webhook.sign"},
                 True, standard_sign, standard_verify),
        Provider("slack", "slack_sdk", "8f742231b10e8888abcd99yyyzzz85a5", "0000231b10e8888abcd99yyyzzz8ffff",
                 slack_body, (b"amount%3D2000", b"amount%3D9999"), "application/x-www-form-urlencoded",
                 {"User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)"},
                 ["X-Slack-Request-Timestamp", "X-Slack-Signature"],
                 {"X-Slack-Request-Timestamp": "the --timestamp given",
                  "X-Slack-Signature": "slack_sdk SignatureVerifier.generate_signature"},
                 True, slack_sign, slack_verify),
        Provider("github", "octokit", "It's a Secret to Everybody", "It's not the secret",
                 github_body, (b'"id":2000', b'"id":9999'), "application/json",
                 {"User-Agent": "GitHub-Hookshot/044aadd", "X-GitHub-Event": "push"},
                 ["X-Hub-Signature-256", "X-Hub-Signature", "X-GitHub-Delivery"],
                 {"X-Hub-Signature-256": "octokit sign",
                  "X-Hub-Signature": "Python's hmac with SHA-1 (octokit signs only SHA-256)",
                  "X-GitHub-Delivery": "the --id given"},
                 False, github_sign, github_verify),
    ]


# ---------------------------------------------------------------------------------------------
# The checks, the same for every provider


def post_signed(server: Server, provider: Provider, body: bytes, signature: Headers) -> Tuple[int, object]:
    headers = {"Content-Type": provider.content_type, **provider.extra_headers, **signature}
    return http("POST", f"{server.base}/hooks/{provider.hook}", body, headers)


def expect_accepted(server: Server, provider: Provider) -> str:
    now = int(time.time())
    signature = provider.sdk_sign(provider.secret, provider.body, now, "msg_2ke4Vf8lUxqMrTs0aXj1")
    status, answer = post_signed(server, provider, provider.body, signature)
    expect_equal("status", 200, status)
    expect_equal("answer's status", "succeeded", answer.get("status") if isinstance(answer, dict) else answer)
    expect_equal("answer's exit_code", 0, answer.get("exit_code"))
    return "200 succeeded"


def expect_refused(server: Server, provider: Provider, body: bytes, signature: Headers, error: str) -> str:
    status, answer = post_signed(server, provider, body, signature)
    expect_equal("status", 401, status)
    if not isinstance(answer, dict):
        raise AssertionError(f"the 401's body is not a JSON object: {answer!r}")
    expect_equal("error", error, answer.get("error"))
    if not answer.get("message"):
        raise AssertionError(f"the 401 has no message: {answer!r}")
    return f"401 {error}"


def check_wrong_secret(server: Server, provider: Provider) -> str:
    signature = provider.sdk_sign(provider.wrong_secret, provider.body, int(time.time()), "msg_wrongsecret01")
    return expect_refused(server, provider, provider.body, signature, "signature_invalid")


def check_old_timestamp(server: Server, provider: Provider) -> str:
    old = int(time.time()) - OLD
    signature = provider.sdk_sign(provider.secret, provider.body, old, "msg_oldtimestamp01")
    return expect_refused(server, provider, provider.body, signature, "timestamp_out_of_tolerance")


def check_tampered_body(server: Server, provider: Provider) -> str:
    old, new = provider.tamper
    if old not in provider.body:
        raise AssertionError(f"the test body has no {old!r} to change")
    signature = provider.sdk_sign(provider.secret, provider.body, int(time.time()), "msg_tampered01")
    return expect_refused(server, provider, provider.body.replace(old, new), signature, "signature_invalid")


def check_sign_names(printed: List[Tuple[str, str]], provider: Provider) -> str:
    expect_equal("header names printed by hookrunner sign", provider.sign_headers, [name for name, _ in printed])
    return ", ".join(provider.sign_headers)


def check_sign_value(printed: List[Tuple[str, str]], sdk: Headers, name: str) -> str:
    values = [value for printed_name, value in printed if printed_name.lower() == name.lower()]
    if len(values) != 1:
        raise AssertionError(f"hookrunner sign printed {len(values)} `{name}` headers: {printed!r}")
    expect_equal(f"`{name}` (expected: the SDK's; actual: hookrunner sign's)", sdk[name], values[0])
    return values[0]


def check_sdk_verifies(provider: Provider, printed: List[Tuple[str, str]], accept: bool) -> None:
    """Runs the SDK's verify, keyed with the hook's secret, on headers printed by `hookrunner sign`."""
    accepted = provider.sdk_verify(provider.secret, provider.body, dict(printed))
    if accepted != accept:
        verdict = "refused" if accept else "accepted"
        raise AssertionError(f"{provider.sdk} {verdict} hookrunner sign's headers {dict(printed)!r}")


def check_send(server: Server, provider: Provider, secret: str, exit_code: int) -> str:
    """`hookrunner send` of the body the SDK sent first: with the right secret it passes the
    signature and is answered as that delivery's duplicate (exit 3, nothing ran) or run (0)."""
    result = hookrunner_send(f"{server.base}/hooks/{provider.hook}", provider.name, secret, provider.body)
    output = " | ".join(line for line in (result.stdout + result.stderr).splitlines() if line.strip())
    allowed = {exit_code, 3} if exit_code == 0 else {exit_code}
    if result.returncode not in allowed or (result.returncode == 3 and "duplicate" not in output):
        raise AssertionError(f"exit {result.returncode}, expected {sorted(allowed)}: {output}")
    return output.split(" | ")[0]


def check_provider(results: Results, server: Server, provider: Provider) -> None:
    label = f"{provider.name} ({provider.sdk})"
    results.run(f"{label}: SDK-signed request is accepted", lambda: expect_accepted(server, provider))
    results.run(f"{label}: SDK signature with another secret is refused",
                lambda: check_wrong_secret(server, provider))
    if provider.has_timestamp:
        results.run(f"{label}: SDK signature from {OLD // 60} minutes ago is refused",
                    lambda: check_old_timestamp(server, provider))
    results.run(f"{label}: body changed after SDK signing is refused", lambda: check_tampered_body(server, provider))

    now, msg_id = int(time.time()), "msg_2ke4Vf8lUxqMrTs0aXj1"
    try:
        printed = hookrunner_sign(provider.name, provider.secret, provider.body, now, msg_id)
        sdk = provider.sdk_sign(provider.secret, provider.body, now, msg_id)
    except Exception as error:  # noqa: BLE001 - the checks below need both; report once
        results.run(f"{label}: hookrunner sign and the SDK sign the same body", lambda: _reraise(error))
    else:
        results.run(f"{label}: hookrunner sign prints the provider's headers",
                    lambda: check_sign_names(printed, provider))
        for name, source in provider.compare.items():
            results.run(f"{label}: hookrunner sign `{name}` equals {source}",
                        lambda name=name: check_sign_value(printed, sdk, name))
        results.run(f"{label}: SDK verify accepts hookrunner sign output",
                    lambda: check_sdk_verifies(provider, printed, True))
        results.run(f"{label}: SDK verify refuses hookrunner sign output made with another secret",
                    lambda: check_sdk_verifies(provider, hookrunner_sign(provider.name, provider.wrong_secret,
                                                                         provider.body, now, msg_id), False))

    results.run(f"{label}: hookrunner send with the right secret passes (exit 0, or 3 for a duplicate)",
                lambda: check_send(server, provider, provider.secret, 0))
    results.run(f"{label}: hookrunner send with a wrong secret exits 1",
                lambda: check_send(server, provider, provider.wrong_secret, 1))


def _reraise(error: Exception) -> None:
    raise error


def node_available() -> Optional[str]:
    """None when node can run octokit.mjs, else why it cannot."""
    if shutil.which("node") is None:
        return "node is not installed"
    prefix = Path(os.environ.get("SDK_NODE_DIR", ROOT / "target" / "sdk-node"))
    if not (prefix / "node_modules" / "@octokit" / "webhooks-methods" / "package.json").exists():
        return f"@octokit/webhooks-methods is not installed under {prefix} (run tests/sdk/run.sh)"
    return None


def main() -> int:
    results = Results()
    if not HOOKRUNNER.exists():
        results.run("hookrunner binary exists", lambda: _reraise(AssertionError(f"{HOOKRUNNER} not found; cargo build")))
        print(results.summary())
        return 1
    chosen = providers()
    no_node = node_available()
    if no_node:
        if shutil.which("node") is not None:
            # node is here but the SDK is not: that is a setup failure, not a reason to skip.
            results.run("octokit is installed", lambda: _reraise(AssertionError(no_node)))
        else:
            results.skip("github (octokit): all checks", no_node)
        chosen = [provider for provider in chosen if provider.name != "github"]

    with tempfile.TemporaryDirectory(prefix="hookrunner-sdk-") as temp:
        directory = Path(temp)
        receiver = Receiver()
        server = Server(directory, write_config(directory, chosen, receiver))
        try:
            if results.run("hookrunner serve answers GET /healthz with 200", server.wait_healthy):
                for provider in chosen:
                    check_provider(results, server, provider)
                check_notification(results, server, receiver)
        finally:
            server.stop()
            receiver.stop()
    print(results.summary())
    return 1 if results.failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Drives the web page at `/ui/` in a real browser (headless Chromium through Selenium).

It starts `hookrunner serve` on a free loopback port with a config of its own, triggers hooks over
HTTP with their token, and walks through the page as a person would, one step a function:

  sign-in   a wrong admin token shows an error; the right one lands on the hooks page
  live-log  a running job's log grows on its page without a reload
  cancel    "Cancel job", confirmed in the dialog, ends the job `cancelled`
  rerun     "Re-run" on a finished job opens a new job, which runs to `succeeded`
  approve   "Approve" runs a gated job to `succeeded`; "Reject" ends another `rejected`
  xss       output with markup and ANSI colour codes shows as text: no script runs, no ESC shown
  layout    at 375 px nothing scrolls sideways; a dark colour scheme gives a dark page

and saves screenshots (1280x800, and one 375 px wide) into docs/screenshots/ (or $SCREENSHOT_DIR).

Usage: check.py [STEP ...]    run only these steps (sign-in always runs: the others need it).
The `gated` hook, which needs approvals, is in the config only when `approve` runs.

It prints one line per step and ends with `N passed, M failed`; it exits 1, naming the failed
steps, if any failed. The server and the browser are always stopped. Run it through
tests/browser/run.sh, which installs Chromium, ChromeDriver and Selenium and builds hookrunner.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from harness import HOOKRUNNER, ROOT, Results, Server, http  # noqa: E402

try:
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException, WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait
except ImportError as missing:
    sys.exit(f"error: selenium is not installed ({missing}); run tests/browser/run.sh")

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
SCREENSHOTS = Path(os.environ.get("SCREENSHOT_DIR", ROOT / "docs" / "screenshots"))
SCREENSHOT_LIMIT = 200 * 1024  # bytes: screenshots are committed, so they stay small
DESKTOP = (1280, 800)
PHONE = (375, 800)
DEADLINE = 20.0  # seconds for a job or a page to reach the state a step waits for

# Tokens made up for this run; the server reads them from its environment (`env:NAME`).
ADMIN_TOKEN = "browser-check-admin-token"
HOOK_TOKEN = "browser-check-hook-token"
TOKEN_HEADER = "X-Token"

# What the steps look for on the page. The log, the jobs table and the approval buttons are being
# reworked (live updates, approvals): adjust here.
LOG = "#log, pre.log"
STATUS_CELL = "//tr[th[normalize-space()='status']]/td"
CANCEL_BUTTON = "form[action$='/cancel'] button[type=submit]"
RERUN_BUTTON = "form[action$='/rerun'] button[type=submit]"
APPROVE_BUTTON = "//button[normalize-space()='Approve']"
REJECT_BUTTON = "//button[normalize-space()='Reject']"
SIGN_IN_ERROR = ".signin [role=alert], .signin .error"

# Chromium's flags: no sandbox (CI runs as root), and none of its own connections to the outside.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    f"--window-size={DESKTOP[0]},{DESKTOP[1]}",
]

XSS_LINE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
SLOW_LINES = 20  # the slow hook prints this many lines, 0.3 s apart


def token_hook(hook_id: str, script: str, **extra: object) -> Dict[str, object]:
    """An async hook that needs the hook token in `X-Token` and runs `sh -c script`."""
    return {
        "id": hook_id,
        "signature": {"token": {"header": TOKEN_HEADER, "secret": "env:BROWSER_HOOK_TOKEN"}},
        "run": {"command": ["sh", "-c", script]},
        "response": {"mode": "async"},
        **extra,
    }


def write_config(directory: Path, with_approval: bool) -> Path:
    """The hooks the steps trigger. JSON is YAML, and spares quoting the shell scripts twice."""
    hooks = [
        token_hook("slow", f'for i in $(seq 1 {SLOW_LINES}); do echo "line $i of {SLOW_LINES}"; sleep 0.3; done',
                   description="Prints a line every 0.3 s for 6 s"),
        token_hook("quick", 'echo "quick work done"', description="Says it is done"),
        token_hook("xss", f"printf '%s\\n' '{XSS_LINE}'; printf '\\033[1;31mred\\033[0m and plain\\n'",
                   description="Prints markup and colour codes"),
    ]
    if with_approval:
        hooks.append(token_hook("gated", 'echo "approved work done"', description="Runs once someone approves it",
                                approval={"timeout": "1h"}))
    config = {"server": {"admin_token": "env:BROWSER_ADMIN_TOKEN"}, "hooks": hooks}
    path = directory / "hooks.yaml"
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def poll(what: str, probe: Callable[[], Optional[object]], deadline: float = DEADLINE,
         every: float = 0.2) -> object:
    """Calls `probe` until it returns something other than None, or fails saying `what` never
    happened and the last thing seen."""
    end = time.monotonic() + deadline
    while True:
        seen = probe()
        if seen is not None:
            return seen
        if time.monotonic() > end:
            raise AssertionError(f"{what} within {deadline:.0f}s")
        time.sleep(every)


# ---------------------------------------------------------------------------------------------
# The server and the browser, with one helper per thing a step does


@dataclass
class Run:
    server: Server
    driver: WebDriver
    #: Job ids by hook, as they were triggered.
    jobs: Dict[str, List[str]] = field(default_factory=dict)
    deliveries: int = 0

    # The server, over HTTP

    def trigger(self, hook: str) -> str:
        """Triggers `hook` with its token; returns the new job's id."""
        self.deliveries += 1
        body = json.dumps({"delivery": self.deliveries}).encode()
        headers = {TOKEN_HEADER: HOOK_TOKEN, "Content-Type": "application/json"}
        status, answer = http("POST", f"{self.server.base}/hooks/{hook}", body, headers)
        if status != 202 or not isinstance(answer, dict) or "job_id" not in answer:
            raise AssertionError(f"triggering `{hook}` answered {status}: {answer}")
        self.jobs.setdefault(hook, []).append(answer["job_id"])
        return answer["job_id"]

    def api_status(self, job_id: str) -> str:
        status, answer = http("GET", f"{self.server.base}/jobs/{job_id}")
        if status != 200 or not isinstance(answer, dict):
            raise AssertionError(f"GET /jobs/{job_id} answered {status}: {answer}")
        return str(answer.get("status"))

    def wait_for_job(self, job_id: str, wanted: Tuple[str, ...]) -> str:
        """Waits until the API shows the job in one of the `wanted` statuses; returns it."""
        last = [""]

        def probe() -> Optional[str]:
            last[0] = self.api_status(job_id)
            return last[0] if last[0] in wanted else None

        try:
            return str(poll(f"job {job_id} was not {' or '.join(wanted)}", probe))
        except AssertionError as error:
            raise AssertionError(f"{error} (it is {last[0]})") from None

    def wait_for_output(self, job_id: str) -> None:
        """Waits until the job's log (`GET /jobs/{id}/log`) holds something."""
        def probe() -> Optional[bool]:
            status, text = http("GET", f"{self.server.base}/jobs/{job_id}/log")
            return True if status == 200 and str(text).strip() else None

        poll(f"job {job_id} printed nothing", probe)

    # The browser

    def open_new_job(self, hook: str, wanted: Tuple[str, ...]) -> str:
        """Triggers `hook`, waits until the job is in one of the `wanted` statuses and opens its
        page; returns its id."""
        job_id = self.trigger(hook)
        self.wait_for_job(job_id, wanted)
        self.open(f"/ui/jobs/{job_id}")
        return job_id

    def open(self, path: str) -> None:
        self.driver.get(self.server.base + path)

    def path(self) -> str:
        url = self.driver.current_url
        return url[len(self.server.base):] if url.startswith(self.server.base) else url

    def css(self, selector: str) -> WebElement:
        """The element `selector` finds, once it is on the page."""
        return WebDriverWait(self.driver, DEADLINE).until(
            expected_conditions.presence_of_element_located((By.CSS_SELECTOR, selector)),
            f"nothing on {self.path()} matches `{selector}`")

    def xpath(self, expression: str) -> WebElement:
        return WebDriverWait(self.driver, DEADLINE).until(
            expected_conditions.presence_of_element_located((By.XPATH, expression)),
            f"nothing on {self.path()} matches `{expression}`")

    def wait_for_path(self, what: str, test: Callable[[str], bool]) -> str:
        """Waits until the browser is at a path that passes `test`; returns the path."""
        try:
            return str(poll(f"the browser did not reach {what}", lambda: self.path() if test(self.path()) else None))
        except AssertionError as error:
            raise AssertionError(f"{error} (it is at {self.path()})") from None

    def log_text(self) -> str:
        """The log the job page shows, read again should the page be replaced meanwhile."""
        for attempt in range(3):
            try:
                return self.css(LOG).text
            except StaleElementReferenceException:
                if attempt == 2:
                    raise
        return ""

    def page_status(self) -> str:
        """The status the job page shows; empty while the page is being replaced (a live page
        loads itself again when its job ends)."""
        try:
            cells = self.driver.find_elements(By.XPATH, STATUS_CELL)
            return cells[0].text.strip() if cells else ""
        except StaleElementReferenceException:
            return ""

    def wait_for_page_status(self, wanted: str) -> None:
        """Waits until the job page shows `wanted`, reloading it while it does not (so this works
        whether or not the page updates itself)."""
        seen = [""]

        def probe() -> Optional[bool]:
            seen[0] = self.page_status()
            if seen[0] == wanted:
                return True
            self.driver.refresh()
            return None

        try:
            poll(f"the job page did not show `{wanted}`", probe, every=0.5)
        except AssertionError as error:
            raise AssertionError(f"{error} (it shows `{seen[0]}`)") from None

    def submit_and_confirm(self, button: Callable[[], WebElement], question: Optional[str]) -> None:
        """Clicks a form's submit `button` (found afresh should the page load itself again
        meanwhile), accepts the confirm dialog it opens and waits for the page the post leads to.
        When `question` is given the dialog must ask it; when it is None a dialog is accepted if
        one opens."""
        for attempt in range(3):
            try:
                # A mark on this page: gone once the browser shows the answer to the post.
                self.driver.execute_script("window.__beforeSubmit = true")
                button().click()
                break
            except StaleElementReferenceException:
                if attempt == 2:
                    raise
        try:
            alert = WebDriverWait(self.driver, 5 if question else 1).until(expected_conditions.alert_is_present())
        except TimeoutException:
            if question:
                raise AssertionError(f"no confirm dialog asked `{question}`") from None
        else:
            asked = alert.text
            alert.accept()
            if question and asked != question:
                raise AssertionError(f"the dialog asked `{asked}`, not `{question}`")

        def left() -> Optional[bool]:
            try:
                return None if self.driver.execute_script("return window.__beforeSubmit === true") else True
            except WebDriverException:  # the page is being replaced
                return None

        poll(f"the browser stayed on {self.path()} after the post", left)

    def viewport(self, size: Tuple[int, int], mobile: bool = False) -> None:
        width, height = size
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})

    def color_scheme(self, scheme: str) -> None:
        """Emulates `prefers-color-scheme: scheme`; the empty text stops emulating it."""
        features = [{"name": "prefers-color-scheme", "value": scheme}] if scheme else []
        self.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": features})

    def screenshot(self, name: str) -> None:
        path = SCREENSHOTS / name
        if not self.driver.save_screenshot(str(path)):
            raise AssertionError(f"the browser saved no screenshot {name}")
        size = path.stat().st_size
        if size > SCREENSHOT_LIMIT:
            raise AssertionError(f"{name} is {size // 1024} KiB, more than {SCREENSHOT_LIMIT // 1024} KiB")


# ---------------------------------------------------------------------------------------------
# The steps: each returns a detail to print, or raises


def sign_in(run: Run) -> str:
    run.open("/ui/")
    run.wait_for_path("the sign-in page", lambda path: path.startswith("/ui/sign-in"))
    run.css("input[name=token]")
    run.screenshot("sign-in.png")

    def submit(token: str) -> None:
        field_ = run.css("input[name=token]")
        field_.clear()
        field_.send_keys(token)
        run.css("form.signin button[type=submit]").click()

    submit("not-the-admin-token")
    error = run.css(SIGN_IN_ERROR)
    shown = error.text.strip()
    if not error.is_displayed() or not shown:
        raise AssertionError("a wrong token showed no error")
    submit(ADMIN_TOKEN)
    run.wait_for_path("the hooks page", lambda path: path == "/ui/")
    heading = run.css("h1").text
    if heading != "Hooks":
        raise AssertionError(f"signed in, the page's heading is `{heading}`, not `Hooks`")
    listed = run.driver.find_element(By.TAG_NAME, "main").text
    missing = [hook for hook in ("slow", "quick", "xss") if hook not in listed]
    if missing:
        raise AssertionError(f"the hooks page does not list {missing}")
    return f"wrong token: `{shown}`"


def live_log(run: Run) -> str:
    job_id = run.trigger("slow")
    run.wait_for_output(job_id)
    run.open(f"/ui/jobs/{job_id}")
    # A mark that a reload would wipe: the page must grow by itself.
    run.driver.execute_script("window.__notReloaded = true")
    first = run.log_text()
    time.sleep(1.5)
    second = run.log_text()
    run.driver.execute_script("arguments[0].scrollIntoView({block: 'end'})", run.css(LOG))
    run.screenshot("job-running.png")
    if not run.driver.execute_script("return window.__notReloaded === true"):
        raise AssertionError("the page reloaded itself")
    if len(second) <= len(first):
        raise AssertionError(f"the log did not grow in 1.5 s: {len(first)} then {len(second)} characters"
                             f" (the job is {run.api_status(job_id)})")
    return f"{len(first)} then {len(second)} characters"


def cancel(run: Run) -> str:
    job_id = run.open_new_job("slow", ("running",))
    run.submit_and_confirm(lambda: run.css(CANCEL_BUTTON), "Cancel this job?")
    run.wait_for_path("the job page", lambda path: path == f"/ui/jobs/{job_id}")
    run.wait_for_page_status("cancelled")
    status = run.api_status(job_id)
    if status != "cancelled":
        raise AssertionError(f"the page shows `cancelled`, the API `{status}`")
    return job_id


def rerun(run: Run) -> str:
    job_id = run.open_new_job("quick", ("succeeded",))
    run.submit_and_confirm(lambda: run.css(RERUN_BUTTON), "Run this job's command again, as a new job?")
    new_page = run.wait_for_path(
        "a new job's page",
        lambda path: path.startswith("/ui/jobs/") and path != f"/ui/jobs/{job_id}")
    run.wait_for_page_status("succeeded")
    new_id = new_page.rsplit("/", 1)[-1]
    if "quick work done" not in run.log_text():
        raise AssertionError(f"the new job's log does not say `quick work done`: {run.log_text()!r}")
    return f"{job_id} -> {new_id}"


def approve(run: Run) -> str:
    approved, rejected = run.trigger("gated"), run.trigger("gated")
    for job_id in (approved, rejected):
        run.wait_for_job(job_id, ("awaiting_approval",))
    run.open(f"/ui/jobs/{approved}")
    run.wait_for_page_status("awaiting_approval")
    run.xpath(APPROVE_BUTTON)
    run.screenshot("job-awaiting.png")
    run.submit_and_confirm(lambda: run.xpath(APPROVE_BUTTON), None)
    run.wait_for_path("the approved job's page", lambda path: path.startswith(f"/ui/jobs/{approved}"))
    run.wait_for_page_status("succeeded")
    run.open(f"/ui/jobs/{rejected}")
    run.submit_and_confirm(lambda: run.xpath(REJECT_BUTTON), None)
    run.wait_for_path("the rejected job's page", lambda path: path.startswith(f"/ui/jobs/{rejected}"))
    run.wait_for_page_status("rejected")
    statuses = run.api_status(approved), run.api_status(rejected)
    if statuses != ("succeeded", "rejected"):
        raise AssertionError(f"the API says {statuses}, not ('succeeded', 'rejected')")
    return f"{approved} succeeded, {rejected} rejected"


def xss(run: Run) -> str:
    job_id = run.open_new_job("xss", ("succeeded",))
    log = run.log_text()
    pwned = run.driver.execute_script("return typeof window.__pwned")
    if pwned != "undefined":
        raise AssertionError(f"the job's output ran as script: window.__pwned is {pwned}")
    if XSS_LINE not in log:
        raise AssertionError(f"the log does not show the markup as text: {log!r}")
    if "\x1b" in log:
        raise AssertionError(f"the log shows an ESC character: {log!r}")
    if "red and plain" not in log:
        raise AssertionError(f"the coloured text is gone: {log!r}")
    elements = run.driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).reduce("
        "(count, log) => count + log.querySelectorAll('script, img').length, 0)", LOG)
    if elements:
        raise AssertionError(f"the log holds {elements} script or img elements")
    return "markup shown as text, no script ran, no ESC"


def scrolls_sideways(run: Run) -> bool:
    """Whether the page is wider than the window. Measured against the width inside a vertical
    scrollbar, so a page that fits only under it counts as too wide."""
    return bool(run.driver.execute_script(
        "const page = document.scrollingElement;"
        "return page.scrollWidth > page.clientWidth || page.scrollWidth > window.innerWidth"))


def layout(run: Run) -> str:
    job_pages = [f"/ui/jobs/{ids[-1]}" for ids in run.jobs.values()]
    if not job_pages:
        job_id = run.trigger("quick")
        run.wait_for_job(job_id, ("succeeded",))
        job_pages = [f"/ui/jobs/{job_id}"]
    run.open("/ui/")
    run.screenshot("hooks.png")
    run.open("/ui/jobs")
    run.screenshot("jobs.png")

    # Not emulating a phone (`mobile`) for the measure: a phone's browser widens its layout to
    # fit a page that is too wide, so the page would never look too wide.
    run.viewport(PHONE)
    try:
        wide = []
        for path in ["/ui/", "/ui/jobs", *job_pages]:
            run.open(path)
            if scrolls_sideways(run):
                width = run.driver.execute_script("return document.scrollingElement.scrollWidth")
                wide.append(f"{path} ({width} px)")
        run.viewport(PHONE, mobile=True)
        run.open("/ui/jobs")
        run.screenshot("mobile-jobs.png")
    finally:
        run.viewport(DESKTOP)
    if wide:
        raise AssertionError(f"at {PHONE[0]} px these scroll sideways: {', '.join(wide)}")

    run.color_scheme("dark")
    try:
        run.open("/ui/")
        background = run.driver.execute_script("return getComputedStyle(document.body).backgroundColor")
    finally:
        run.color_scheme("")
    channels = [float(part) for part in background[background.index("(") + 1:-1].split(",")[:3]]
    luminance = (0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2]) / 255
    if luminance > 0.25:
        raise AssertionError(f"with a dark colour scheme the background is {background}")
    return f"{2 + len(job_pages)} pages fit {PHONE[0]} px; dark background {background}"


STEPS: List[Tuple[str, Callable[[Run], str], str]] = [
    ("sign-in", sign_in, "a wrong token shows an error, the right one lands on the hooks page"),
    ("live-log", live_log, "a running job's log grows without a reload"),
    ("cancel", cancel, "a confirmed cancel ends the job `cancelled`"),
    ("rerun", rerun, "re-running a finished job opens a new job that succeeds"),
    ("approve", approve, "Approve runs a gated job to `succeeded`, Reject ends one `rejected`"),
    ("xss", xss, "markup and colour codes in the output show as text"),
    ("layout", layout, "no sideways scrolling at 375 px; a dark colour scheme is dark"),
]


# ---------------------------------------------------------------------------------------------


def start_browser(profile: Path, log: Path) -> WebDriver:
    """Chromium through ChromeDriver, with an empty profile in `profile`."""
    for program in (CHROMIUM, CHROMEDRIVER):
        if not program.exists():
            raise AssertionError(f"{program} is not installed (run tests/browser/run.sh)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(log))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(DEADLINE)
    return driver


def chosen_steps(names: List[str]) -> List[Tuple[str, Callable[[Run], str], str]]:
    known = [name for name, _, _ in STEPS]
    unknown = [name for name in names if name not in known]
    if unknown:
        sys.exit(f"error: no step {', '.join(unknown)}; the steps are {', '.join(known)}")
    return [step for step in STEPS if not names or step[0] in names or step[0] == "sign-in"]


def without_stacktrace(step: Callable[[Run], str], run: Run) -> str:
    """Runs a step; a WebDriver error is reported by its message alone, without ChromeDriver's
    stack of addresses."""
    try:
        return step(run)
    except WebDriverException as error:
        raise AssertionError(f"{type(error).__name__}: {error.msg}") from None


def run_steps(results: Results, server: Server, directory: Path,
              steps: List[Tuple[str, Callable[[Run], str], str]]) -> List[str]:
    """Starts the browser and runs the steps; returns the names of those that failed ("setup"
    when the server or the browser did not start). The browser is always stopped."""
    if not results.run("setup: hookrunner serve answers /healthz", server.wait_healthy):
        return ["setup"]
    drivers: List[WebDriver] = []

    def start() -> str:
        drivers.append(start_browser(directory / "profile", directory / "chromedriver.log"))
        return str(drivers[0].capabilities.get("browserVersion", ""))

    if not results.run("setup: headless Chromium starts", start):
        return ["setup"]
    driver = drivers[0]
    failed = []
    try:
        run = Run(server, driver)
        run.viewport(DESKTOP)
        for name, step, what in steps:
            if not results.run(f"{name}: {what}", lambda step=step: without_stacktrace(step, run)):
                failed.append(name)
                if name == "sign-in":
                    break
    finally:
        driver.quit()
    return failed


def main(arguments: List[str]) -> int:
    # A SIGTERM unwinds like an error, so the `finally` blocks stop the browser and the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    steps = chosen_steps(arguments)
    if not HOOKRUNNER.exists():
        print(f"error: {HOOKRUNNER} not found; run `cargo build`", file=sys.stderr)
        return 1
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    results = Results()
    with tempfile.TemporaryDirectory(prefix="hookrunner-browser-") as temp:
        directory = Path(temp)
        config = write_config(directory, with_approval=any(name == "approve" for name, _, _ in steps))
        server = Server(directory, config, env={"BROWSER_ADMIN_TOKEN": ADMIN_TOKEN, "BROWSER_HOOK_TOKEN": HOOK_TOKEN})
        try:
            failed = run_steps(results, server, directory, steps)
            if failed and failed != ["setup"]:
                print(f"the server's log ends:\n{server.log_tail()}", flush=True)
        finally:
            server.stop()
    print(results.summary())
    if failed:
        print(f"error: failed steps: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

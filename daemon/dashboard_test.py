"""taskwald's web dashboard in a real browser (headless Chromium, driven by
Selenium through Debian's chromium-driver).

Usage: dashboard_test.py TASKWALD [--screenshot=FILE]

Starts taskwald on a free port of 127.0.0.1 with a read token and an admin
token, creates tasks through the JSON API (some with HTML, script and
terminal escapes in every text field), then in the browser:
  - the page asks for a token; a wrong one is refused;
  - with the read token, the counts and the per-type table show what the
    test created; retry is refused (403) and said so;
  - with the admin token, the failed task is found through the list's
    status filter, opened, retried, and shows PENDING (and the API agrees);
  - hostile text shows as text: no injected element exists, no injected
    script ran, the escapes are visible as \\x1b;
  - cancel and delete take a second click, and an armed delete does not
    follow the user to another task;
  - the page logs no error of its own (a CSP violation would be one).
taskwald is stopped by PID at the end, also when a check fails.
--screenshot saves the overview (README's docs/dashboard.png).
"""

import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

READ_TOKEN = "read-" + "r" * 20
ADMIN_TOKEN = "admin-" + "a" * 20
WAIT_S = 60  # Sanitizer builds and a loaded machine are slow.

XSS_KEY = "<script>window.__xss=1</script>"
XSS_TYPE = '<img src=x onerror="window.__xss=2">'
XSS_PAYLOAD = b"<b id=injected>bold</b>\x1b[31mred\x1b[0m\nline two"
XSS_ERROR = "<svg onload=window.__xss=3>\x1b]0;owned\x07"


class Daemon:
    def __init__(self, binary, workdir):
        self.workdir = workdir
        with open(os.path.join(workdir, "read.token"), "w") as f:
            f.write(READ_TOKEN + "\n")
        with open(os.path.join(workdir, "admin.token"), "w") as f:
            f.write(ADMIN_TOKEN + "\n")
        self.out = open(os.path.join(workdir, "taskwald.out"), "w+")
        self.err = open(os.path.join(workdir, "taskwald.err"), "w+")
        self.proc = subprocess.Popen(
            [binary, "--data_dir=" + os.path.join(workdir, "data"),
             "--listen=127.0.0.1:0", "--series_step_ms=200",
             "--read_token_file=" + os.path.join(workdir, "read.token"),
             "--admin_token_file=" + os.path.join(workdir, "admin.token")],
            stdout=self.out, stderr=self.err)
        self.url = None
        deadline = time.time() + WAIT_S
        prefix = "taskwald listening on "
        while time.time() < deadline and self.proc.poll() is None:
            self.out.seek(0)
            for line in self.out.read().splitlines():
                if line.startswith(prefix):
                    self.url = line[len(prefix):]
            if self.url:
                return
            time.sleep(0.05)
        raise RuntimeError("taskwald did not start:\n" + self.log())

    def log(self):
        self.err.seek(0)
        return self.err.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(WAIT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def call(self, method, path, body=None, token=ADMIN_TOKEN):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method,
            headers={"Authorization": "Bearer " + token,
                     "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=WAIT_S) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as e:
            raise AssertionError("%s %s: %d %s" % (method, path, e.code,
                                                   e.read()[:300]))


def b64(data):
    return base64.b64encode(data).decode()


def seed(daemon):
    """Tasks the page must show; returns the ids that the checks use."""
    ids = {}

    def submit(key, task_type, payload=b"", max_attempts=3):
        r = daemon.call("POST", "/v1/tasks", {
            "idempotency_key": key, "type": task_type,
            "payload": b64(payload), "max_attempts": max_attempts})
        return r["task_id"]

    def claim_and(task_type, verb, **extra):
        c = daemon.call("POST", "/v1/claims",
                        {"worker_id": "w1", "type": task_type})
        body = {"claim": c["claim"]}
        body.update(extra)
        daemon.call("POST", "/v1/claims/" + verb, body)
        return c["task"]["id"]

    for i in range(3):
        submit("mail-%d" % i, "email")
    for i in range(2):
        submit("report-%d" % i, "report", b'{"day":"2026-12-05"}')
        claim_and("report", "complete", result=b64(b"done"))
    ids["failed"] = submit("resize-1", "resize", b"img-1", max_attempts=1)
    claim_and("resize", "fail", error="disk full")
    ids["hostile"] = submit(XSS_KEY, XSS_TYPE, XSS_PAYLOAD, max_attempts=1)
    claim_and(XSS_TYPE, "fail", error=XSS_ERROR)
    return ids


def browser(workdir):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--window-size=1300,1150",
                "--hide-scrollbars", "--no-first-run",
                "--user-data-dir=" + os.path.join(workdir, "chromium")]:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service("/usr/bin/chromedriver",
                      log_path=os.path.join(workdir, "chromedriver.log"))
    return webdriver.Chrome(service=service, options=options)


class Checks:
    def __init__(self, driver, daemon):
        self.d = driver
        self.daemon = daemon
        self.failures = []

    def wait(self, what, condition):
        try:
            return WebDriverWait(self.d, WAIT_S, poll_frequency=0.05).until(
                lambda d: condition())
        except TimeoutException:
            raise AssertionError("timed out waiting for " + what)

    def text(self, element_id):
        return self.d.find_element(By.ID, element_id).text

    def shown(self, element_id):
        return self.d.find_element(By.ID, element_id).is_displayed()

    def login(self, token):
        self.wait("the token form", lambda: self.shown("login"))
        self.d.find_element(By.ID, "token").send_keys(token)
        self.d.find_element(By.CSS_SELECTOR, "#login-form button").click()

    def sign_out(self):
        self.d.find_element(By.ID, "sign-out").click()

    def loaded(self):
        return self.d.execute_script("return document.body.dataset.loaded") \
            == "yes"

    def go(self, hash_):
        self.d.execute_script("location.hash = arguments[0]", hash_)
        self.wait("view " + hash_, lambda: self.loaded())

    def table_rows(self, selector, key):
        """{row's data-<key>: [its cells' texts]}, read in one script: the
        page redraws its tables as it polls, and a row read cell by cell
        could be replaced half way (a stale element)."""
        return self.d.execute_script(
            "const rows = {};"
            "for (const tr of document.querySelectorAll(arguments[0])) {"
            "  rows[tr.dataset[arguments[1]]] ="
            "      Array.from(tr.cells, td => td.innerText.trim());"
            "}"
            "return rows;", selector, key)

    def task_row(self, task_id):
        rows = self.d.find_elements(
            By.CSS_SELECTOR, '#task-list tr[data-task-id="%s"]' % task_id)
        return rows[0] if rows else None

    def no_injection(self, where):
        xss = self.d.execute_script("return window.__xss")
        assert xss is None, "%s: injected script ran (__xss=%r)" % (where, xss)
        for selector in ["#injected", "main img", "main svg", "main script",
                         "main b"]:
            found = self.d.find_elements(By.CSS_SELECTOR, selector)
            assert not found, "%s: injected element %s" % (where, selector)


def run(binary, screenshot):
    workdir = tempfile.mkdtemp(prefix="dashboard-",
                               dir=os.environ.get("TEST_TMPDIR"))
    os.environ["HOME"] = workdir  # Chromium writes under $HOME.
    daemon = Daemon(binary, workdir)
    driver = None
    try:
        ids = seed(daemon)
        driver = browser(workdir)
        c = Checks(driver, daemon)

        # The page is served without a token and asks for one.
        driver.get(daemon.url + "/")
        assert driver.current_url == daemon.url + "/ui/", driver.current_url
        c.login("wrong-token")
        c.wait("the refusal", lambda: "not accepted" in c.text("message"))
        assert c.shown("login")

        # The read token: counts and types.
        c.login(READ_TOKEN)
        c.wait("the counts",
               lambda: c.text("count-tasks") == "7")
        assert c.text("count-pending") == "3", c.text("count-pending")
        assert c.text("count-completed") == "2", c.text("count-completed")
        assert c.text("count-failed") == "2", c.text("count-failed")
        assert c.text("count-claimed") == "0"
        types = {"email", "report", "resize", XSS_TYPE}
        c.wait("the types table", lambda: set(
            c.table_rows("#types tbody tr", "type")) == types)
        rows = c.table_rows("#types tbody tr", "type")
        assert set(rows) == types, rows
        assert rows["email"][1] == "3" and rows["report"][3] == "2", rows
        assert rows["resize"][4] == "1", rows
        assert rows[XSS_TYPE][0] == XSS_TYPE, rows[XSS_TYPE]
        c.no_injection("overview")
        # The charts got samples (taskwald samples every 200 ms here).
        c.wait("the throughput legend",
               lambda: "completed" in c.text("legend-throughput"))
        if screenshot:
            driver.save_screenshot(screenshot)

        # The read token may not retry: the page says why.
        c.go("#/task/" + ids["failed"])
        assert c.text("task-status") == "FAILED", c.text("task-status")
        driver.find_element(By.ID, "task-retry").click()
        c.wait("the 403", lambda: "PERMISSION_DENIED" in c.text("message"))
        assert daemon.call("GET", "/v1/tasks/" + ids["failed"])["status"] == \
            "FAILED"

        # The admin token: find the failed task through the list, retry it.
        c.sign_out()
        c.login(ADMIN_TOKEN)
        c.go("#/tasks")
        c.wait("the list", lambda: c.task_row(ids["failed"]) is not None)
        Select(driver.find_element(By.ID, "filter-status")) \
            .select_by_visible_text("FAILED")
        driver.find_element(By.CSS_SELECTOR, "#filters button").click()
        c.wait("the filtered list", lambda: "status=FAILED" in
               driver.current_url and c.loaded() and
               len(driver.find_elements(By.CSS_SELECTOR,
                                        "#task-list tbody tr")) == 2)
        c.task_row(ids["failed"]).find_element(By.TAG_NAME, "a").click()
        c.wait("the task page", lambda: c.text("task-id") == ids["failed"])
        assert c.text("task-status") == "FAILED"
        assert "img-1" in c.text("task-payload")
        assert "disk full" in c.text("task-fields")
        history = c.text("task-history")
        assert "SUBMITTED" in history and "FAILED" in history, history
        driver.find_element(By.ID, "task-retry").click()
        c.wait("PENDING", lambda: c.text("task-status") == "PENDING")
        assert daemon.call("GET", "/v1/tasks/" + ids["failed"])["status"] == \
            "PENDING"
        c.wait("RETRIED in the history",
               lambda: "RETRIED" in c.text("task-history"))

        # Hostile text, in the list and on its page, shows as text.
        c.go("#/tasks?status=FAILED")
        row = c.task_row(ids["hostile"])
        assert row is not None
        assert XSS_KEY in row.text and XSS_TYPE in row.text, row.text
        assert "<svg onload=window.__xss=3>\\x1b]0;owned\\x07" in row.text, \
            row.text
        c.no_injection("list")
        c.go("#/task/" + ids["hostile"])
        fields = c.text("task-fields")
        assert XSS_KEY in fields and XSS_TYPE in fields, fields
        payload = c.text("task-payload")
        assert "<b id=injected>bold</b>\\x1b[31mred\\x1b[0m" in payload, \
            payload
        assert "line two" in payload
        c.no_injection("task page")

        # Cancel and delete ask for a second click.
        c.go("#/task/" + ids["failed"])
        cancel = driver.find_element(By.ID, "task-cancel")
        cancel.click()
        c.wait("the confirmation",
               lambda: cancel.text.startswith("Confirm"))
        assert daemon.call("GET", "/v1/tasks/" + ids["failed"])["status"] == \
            "PENDING"
        cancel.click()
        c.wait("CANCELLED", lambda: c.text("task-status") == "CANCELLED")

        # An armed delete does not follow the user to another task: there
        # the first click arms again, for that task.
        c.go("#/task/" + ids["hostile"])
        delete = driver.find_element(By.ID, "task-delete")
        c.wait("delete enabled", lambda: delete.is_enabled())
        delete.click()
        c.wait("armed", lambda: delete.text.startswith("Confirm"))
        c.go("#/task/" + ids["failed"])
        c.wait("delete enabled", lambda: delete.is_enabled())
        assert not delete.text.startswith("Confirm"), delete.text
        delete.click()
        c.wait("armed for this task",
               lambda: delete.text == "Confirm delete of task " + ids["failed"])
        for task_id in (ids["hostile"], ids["failed"]):
            daemon.call("GET", "/v1/tasks/" + task_id)  # Both still there.
        delete.click()
        c.wait("the list after the delete",
               lambda: driver.current_url.endswith("#/tasks"))
        try:
            daemon.call("GET", "/v1/tasks/" + ids["failed"])
            raise AssertionError("the task was not deleted")
        except AssertionError as e:
            assert "404" in str(e), e
        daemon.call("GET", "/v1/tasks/" + ids["hostile"])

        # Nothing the page did went wrong in the console (a CSP violation
        # would be logged here). The refused calls above are expected, and
        # so is the 404 of the deleted task's page.
        errors = [e for e in driver.get_log("browser")
                  if e["level"] == "SEVERE" and
                  " 401 " not in e["message"] and
                  " 403 " not in e["message"] and
                  " 404 " not in e["message"]]
        assert not errors, errors
    except Exception:
        if driver is not None:
            out = os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR", workdir)
            driver.save_screenshot(os.path.join(out, "failure.png"))
            print("screenshot of the failure: " +
                  os.path.join(out, "failure.png"))
            for entry in driver.get_log("browser"):
                print("console:", entry)
        print("taskwald's log:\n" + daemon.log())
        raise
    finally:
        if driver is not None:
            driver.quit()
        code = daemon.stop()
    assert code == 0, "taskwald exited %s:\n%s" % (code, daemon.log())


def main():
    args = sys.argv[1:]
    screenshot = None
    for a in list(args):
        if a.startswith("--screenshot="):
            screenshot = os.path.abspath(a.split("=", 1)[1])
            args.remove(a)
    if len(args) != 1:
        print(__doc__)
        return 2
    try:
        run(os.path.abspath(args[0]), screenshot)
    except Exception:
        traceback.print_exc()
        print("FAIL")
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())

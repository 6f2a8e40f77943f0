"""The status page on the admin port (GET /), driven in headless Chromium
over the DevTools protocol during a real migration through a proxy with
--engine-db, --admin-token and live writers of both releases.

- GET / without the token: 401 and the login form, no data, the token
  nowhere in the document; the CSP and nosniff headers are there;
- after the token is typed into the form, the page shows the live
  migration: the phase GET /migrations/current gives, rows done rising
  between two reads, sessions per version, this proxy in the fleet;
- its buttons ask first: a rollback that is not confirmed does nothing;
  pause (confirmed) pauses the backfill's throttle as GET says, resume
  resumes it, complete completes the migration;
- ?token= is taken once and taken off the address bar.

A screenshot of the page during the backfill and one after complete are
kept: $PGT_ARTIFACTS/status_page*.png, else tests/artifacts/."""
import base64
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request

import psycopg
import pytest

from support import current, free_port, NAME, throttle, throttled_migration, TOP, version_options, wait_for
from test_admin_security import raw_request

try:
    import websocket  # Debian: python3-websocket
except ImportError:
    websocket = None

TOKEN = "page-token-5f1c"
# what the page shows of sessions is theirs to choose: it must stay text
HOSTILE = "<img src=x onerror=window.pwned=1>"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = os.environ.get("PGT_ARTIFACTS") or os.path.join(TOP, "tests", "artifacts")


class Chromium:
    """Headless Chromium and one page of it, driven over the DevTools
    protocol. JavaScript dialogs (confirm) are answered by `answer_dialogs`
    and remembered in `dialogs`."""

    def __init__(self):
        self.port = free_port()
        self.profile = tempfile.mkdtemp(prefix="pgtandem-chromium-")
        args = [CHROMIUM, "--headless=new", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--disable-background-networking", "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=%d" % self.port, "--user-data-dir=" + self.profile,
                "--window-size=1280,1600", "about:blank"]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.ws = None
        self.next_id = 0
        self.events = []
        self.answers = {}   # id -> DevTools answer read while waiting for another
        self.dialogs = []
        self.answer_dialogs = True
        url = wait_for(self._page_ws_url, timeout=120, interval=0.2, what="Chromium's DevTools endpoint")
        self.ws = websocket.create_connection(url, timeout=30, suppress_origin=True)
        self.call("Page.enable")
        self.call("Runtime.enable")

    def _page_ws_url(self):
        if self.proc.poll() is not None:
            raise AssertionError("chromium exited with %s" % self.proc.returncode)
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % self.port, timeout=2) as r:
                targets = json.loads(r.read())
        except OSError:
            return None
        pages = [t for t in targets if t.get("type") == "page"]
        return pages[0]["webSocketDebuggerUrl"] if pages else None

    def _send(self, method, params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params or {}}))
        return self.next_id

    def _read_until(self, found, timeout, what):
        """Reads DevTools messages until found() returns something, which it
        returns: answers are kept by id, events in self.events, dialogs
        answered as they open."""
        deadline = time.time() + timeout
        while (v := found()) is None:
            if time.time() > deadline:
                raise AssertionError("no %s within %d s" % (what, timeout))
            self.ws.settimeout(max(0.1, deadline - time.time()))
            msg = json.loads(self.ws.recv())
            if "id" in msg:
                self.answers[msg["id"]] = msg
            elif msg.get("method") == "Page.javascriptDialogOpening":
                self.dialogs.append(msg["params"]["message"])
                self._send("Page.handleJavaScriptDialog", {"accept": self.answer_dialogs})
            elif "method" in msg:
                self.events.append(msg)
        return v

    def call(self, method, params=None, timeout=60):
        want = self._send(method, params)
        msg = self._read_until(lambda: self.answers.pop(want, None), timeout, "answer to " + method)
        self.answers.clear()  # one call at a time: the rest answered dialogs
        if "error" in msg:
            raise AssertionError("%s: %s" % (method, msg["error"]))
        return msg.get("result", {})

    def _loaded_since(self, n, timeout=15):
        """Waits for the page's load event after the n-th event read: what
        Chromium says, not a poll of a document that may be replaced under
        the poll (an evaluate then fails: "Inspected target navigated")."""
        self._read_until(lambda: any(e.get("method") == "Page.loadEventFired" for e in self.events[n:]) or None,
                         timeout, "load of the page")

    def js(self, expression):
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            raise AssertionError("%s: %s" % (expression, r["exceptionDetails"]))
        return r["result"].get("value")

    def text(self, element_id):
        return self.js("document.getElementById(%s).textContent" % json.dumps(element_id))

    def visible(self, element_id):
        # false while the element is not there yet (the page's script builds it)
        return self.js("(function (e) { return !!e && !e.hidden; })(document.getElementById(%s))"
                       % json.dumps(element_id))

    def click(self, element_id, accept=True):
        """Clicks a button; its confirm() is answered with `accept`."""
        self.answer_dialogs = accept
        n = len(self.dialogs)
        self.js("document.getElementById(%s).click()" % json.dumps(element_id))
        return self.dialogs[n:]

    def navigate(self, url):
        n = len(self.events)
        self.call("Page.navigate", {"url": url})
        self._loaded_since(n)

    def reload(self):
        n = len(self.events)
        self.call("Page.reload")
        self._loaded_since(n)

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        print("status page screenshot: %s" % path)
        return path

    def console_errors(self):
        return [e for e in self.events if e.get("method") == "Runtime.exceptionThrown"
                or (e.get("method") == "Runtime.consoleAPICalled" and e["params"].get("type") == "error")]

    def close(self):
        try:
            if self.ws:
                self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture
def chromium():
    if not CHROMIUM or not websocket:
        pytest.skip("chromium or python3-websocket is not installed (tests/deps.sh installs both)")
    c = Chromium()
    yield c
    c.close()


class Writer:
    """One application session through the proxy writing in a loop until
    stopped: the old release (no version) or the new one."""

    def __init__(self, p, dbname, new, application_name="writer"):
        extra = "options=" + urllib.parse.quote(version_options()) if new else ""
        self.conn = psycopg.connect(p.uri(user="postgres", password="postgres", db=dbname, extra=extra),
                                    autocommit=True, connect_timeout=10, application_name=application_name)
        self.new = new
        self.done = 0
        self.errors = []
        self.stop_ev = threading.Event()
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()

    def _run(self):
        if self.new:
            sql = ("INSERT INTO checks (claim, config_json, counts_by_template_json) "
                   "VALUES ('page-new', jsonb_build_object('n', 1), jsonb_build_object('t', 1))")
        else:
            sql = ("INSERT INTO checks (claim_text, aggregation, diagnostics) "
                   "VALUES ('page-old', '{\"o\": 1}', '{\"t\": 1}')")
        while not self.stop_ev.is_set():
            try:
                self.conn.execute(sql)
                self.done += 1
            except psycopg.Error as e:
                self.errors.append(str(e))
                return
            self.stop_ev.wait(0.05)

    def stop(self):
        self.stop_ev.set()
        self.th.join(15)
        self.conn.close()
        assert not self.errors, self.errors
        assert self.done > 0


def page_rows_done(c):
    t = c.text("rows-done")
    return int(t) if t.isdigit() else None


def test_status_page_during_a_real_migration(cluster, proxy_factory, legacy_db, chromium):  # noqa: F811
    c = chromium
    p = proxy_factory(token=TOKEN, extra_args=["--engine-db", cluster.uri(db=legacy_db)])
    with open(throttled_migration(1500)) as f:
        body = f.read()
    old = Writer(p, legacy_db, new=False, application_name=HOSTILE)
    code, started = p.admin("POST", "/migrations", body)
    assert code == 202, started
    writers = [old]
    try:
        wait_for(lambda: current(p)["phase"] == "backfilling", 120, "backfilling")
        writers.append(Writer(p, legacy_db, new=True))

        # without the token: 401, the login form and nothing else
        code, html = raw_request(p.admin_port, "GET", "/", headers={"Host": "127.0.0.1:%d" % p.admin_port})
        assert code == 401
        assert "<form id='login'" in html and NAME not in html and TOKEN not in html
        url = "http://127.0.0.1:%d/" % p.admin_port
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": "Bearer " + TOKEN})) as r:
            assert r.status == 200
            csp = r.headers["Content-Security-Policy"]
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert r.headers["Content-Type"].startswith("text/html")
            assert TOKEN not in r.read().decode()
        assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "unsafe" not in csp, csp

        c.navigate(url)
        wait_for(lambda: c.visible("login"), timeout=10, what="the login form")
        assert not c.visible("main")
        assert c.text("phase") == "" and c.text("mig-name") == ""
        c.js("document.getElementById('token-input').value = %s;"
             "document.getElementById('login').requestSubmit()" % json.dumps(TOKEN))
        wait_for(lambda: c.visible("main") and c.text("phase") not in ("", "-"), timeout=10,
                 what="the page to show the migration")
        assert not c.visible("login")
        assert c.js("sessionStorage.getItem('pgtandem.admin_token')") == TOKEN
        assert c.js("document.cookie") == ""

        # live figures: the phase GET gives, rows done rising between two reads
        assert c.text("mig-name") == NAME
        assert c.text("phase") == current(p)["phase"] == "backfilling"
        first = wait_for(lambda: page_rows_done(c), timeout=10, what="rows done on the page")
        second = wait_for(lambda: (page_rows_done(c) or 0) > first and page_rows_done(c), timeout=20,
                          what="rows done to rise on the page")
        assert int(c.text("rows-total")) >= second
        assert c.text("rate").endswith("rows/s") and c.text("eta") != "-"
        versions = c.js("[...document.querySelectorAll('#versions tr')].map(tr => tr.textContent)")
        wait_for(lambda: sorted(c.js("[...document.querySelectorAll('#versions tr')].map(tr => tr.textContent)"))
                 == sorted(["old1", NAME + "1"]), timeout=10, what="one session per version: %r" % versions)
        flight = c.js("[...document.querySelectorAll('#in-flight tr')].map(tr => [...tr.cells].map(td => td.textContent))")
        assert len(flight) == 1 and flight[0][:3] == [NAME, current(p)["phase"], "this proxy"], flight
        fleet = c.js("[...document.querySelectorAll('#fleet tr')].map(tr => tr.textContent)")
        assert len(fleet) == 1 and "(this one)" in fleet[0] and "127.0.0.1:%d" % p.port in fleet[0], fleet
        print("page during the backfill: rows done %d then %d of %s, %s, ETA %s, throttle %s"
              % (first, second, c.text("rows-total"), c.text("rate"), c.text("eta"), c.text("throttle")))
        os.makedirs(ARTIFACTS, exist_ok=True)
        c.screenshot(os.path.join(ARTIFACTS, "status_page.png"))

        # a rollback that is not confirmed does nothing
        asked = c.click("btn-rollback", accept=False)
        assert asked and "Roll back " + NAME in asked[0], asked
        assert current(p)["phase"] == "backfilling"

        # pause and resume through the throttle
        asked = c.click("btn-pause")
        assert asked and "Pause the backfill of " + NAME in asked[0], asked
        wait_for(lambda: current(p)["backfill"]["settings"]["paused"] is True, 10, "the throttle paused")
        wait_for(lambda: c.text("throttle") == "paused", timeout=10, what="the page to say paused")
        held = current(p)["backfill"]["rows_done"]
        assert c.js("document.getElementById('btn-pause').disabled") is True
        asked = c.click("btn-resume")
        assert asked and "Resume" in asked[0], asked
        wait_for(lambda: current(p)["backfill"]["settings"]["paused"] is False, 10, "the throttle resumed")
        wait_for(lambda: c.text("throttle") not in ("paused", ""), timeout=10, what="the page to say resumed")
        wait_for(lambda: current(p)["backfill"]["rows_done"] > held, 30, "rows moving again")

        # finish the backfill at full speed, then complete from the page
        throttle(p, max_rows_per_sec=0)
        wait_for(lambda: current(p)["phase"] == "active", 120, "active")
        wait_for(lambda: c.text("phase") == "active", timeout=10, what="the page to say active")
        # complete while the old release is connected: refused, and the page
        # names the session by its application_name, as text
        wait_for(lambda: not c.js("document.getElementById('btn-complete').disabled"), timeout=10,
                 what="the complete button")
        asked = c.click("btn-complete")
        assert asked and "Complete " + NAME in asked[0], asked
        wait_for(lambda: c.text("action-result").startswith("complete: 409"), timeout=60,
                 what="the refusal on the page: %r" % c.text("action-result"))
        assert HOSTILE in c.text("action-result") and "old release" in c.text("action-result")
        wait_for(lambda: HOSTILE in c.text("mig-error"), timeout=10, what="the refusal as the migration's error")
        assert c.js("document.querySelectorAll('img').length") == 0
        assert c.js("typeof window.pwned") == "undefined"
        assert current(p)["phase"] == "active"
        old.stop()
        writers.remove(old)
        # a session of the new release idle in a transaction: the cutover's
        # drain times out and the page names it among the blockers; once it
        # commits, the next attempt completes
        blocker = psycopg.connect(p.uri(user="postgres", password="postgres", db=legacy_db,
                                        extra="options=" + urllib.parse.quote(version_options())),
                                  connect_timeout=10, application_name="page-blocker")
        blocker.execute("SELECT count(*) FROM checks")
        try:
            wait_for(lambda: not c.js("document.getElementById('btn-complete').disabled"), timeout=10,
                     what="the complete button")
            asked = c.click("btn-complete")
            assert asked and "Complete " + NAME in asked[0], asked
            wait_for(lambda: "page-blocker" in c.js("document.getElementById('blockers').textContent"),
                     timeout=60, what="the blocker on the page")
            blockers = c.js("[...document.querySelectorAll('#blockers li')].map(li => li.textContent)")
            assert any(b.startswith("in a transaction: ") and "page-blocker" in b for b in blockers), blockers
            assert c.text("phase") == "completing", c.text("phase")
            c.screenshot(os.path.join(ARTIFACTS, "status_page_blocked.png"))
        finally:
            blocker.rollback()
            blocker.close()
        wait_for(lambda: current(p)["phase"] == "completed", 120, "completed")
        wait_for(lambda: c.text("phase") == "completed", timeout=10, what="the page to say completed")
        wait_for(lambda: c.text("action-result").startswith("complete: 200"), timeout=30,
                 what="the page to show complete's answer: %r" % c.text("action-result"))
        assert c.text("cutover") != "none yet"
        c.screenshot(os.path.join(ARTIFACTS, "status_page_completed.png"))
        assert not c.console_errors(), c.console_errors()
    finally:
        for w in writers:
            w.stop()


def test_status_page_takes_the_token_once_from_the_address(proxy_factory, chromium):
    c = chromium
    p = proxy_factory(token=TOKEN)
    c.navigate("http://127.0.0.1:%d/?token=%s" % (p.admin_port, TOKEN))
    wait_for(lambda: c.visible("main") and c.text("connections") not in ("", "-"), timeout=10,
             what="the page to show the proxy")
    assert c.js("location.search") == ""
    assert c.text("phase") == "no engine database"
    assert c.js("document.getElementById('btn-complete').disabled") is True
    # a wrong token brings the form back, with no data left on the page
    c.js("sessionStorage.setItem('pgtandem.admin_token', 'wrong')")
    c.reload()
    wait_for(lambda: c.visible("login"), timeout=10,
             what="the login form after a wrong token")
    assert c.text("login-error") == "That token was refused."
    assert not c.visible("main")


def test_status_page_without_a_token_configured(proxy_factory):
    """No token: the page is served like the API, to loopback names only."""
    p = proxy_factory(env={"PGTANDEM_ADMIN_TOKEN": ""})
    code, html = raw_request(p.admin_port, "GET", "/", headers={"Host": "127.0.0.1:%d" % p.admin_port})
    assert code == 200 and "<script>" in html
    code, _ = raw_request(p.admin_port, "GET", "/", headers={"Host": "rebind.example:%d" % p.admin_port})
    assert code == 421


def test_the_policy_allows_exactly_the_inline_script_and_style(proxy_factory):
    """Without Chromium too: the CSP's hashes are those of the document's
    one <script> and one <style>, so nothing else (an injected element)
    would run, and the headers a browser needs are there."""
    import hashlib
    import re
    p = proxy_factory(token=TOKEN)
    req = urllib.request.Request("http://127.0.0.1:%d/" % p.admin_port, headers={"Authorization": "Bearer " + TOKEN})
    with urllib.request.urlopen(req) as r:
        html = r.read().decode()
        headers = r.headers
    csp = headers["Content-Security-Policy"]

    def source(tag):
        found = re.findall(r"<%s>(.*?)</%s>" % (tag, tag), html, re.S)
        assert len(found) == 1, (tag, len(found))
        return "'sha256-%s'" % base64.b64encode(hashlib.sha256(found[0].encode()).digest()).decode()

    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'", csp
    assert directives["script-src"] == source("script"), csp
    assert directives["style-src"] == source("style"), csp
    assert directives["connect-src"] == "'self'" and directives["frame-ancestors"] == "'none'", csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store" and headers["Referrer-Policy"] == "no-referrer"
    assert "innerHTML" not in html and "insertAdjacentHTML" not in html and "document.write" not in html
    assert "Set-Cookie" not in headers

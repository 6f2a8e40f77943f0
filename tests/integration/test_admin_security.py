"""The admin HTTP API against hostile callers: web pages that post to it
cross-site or through DNS rebinding, header floods, numbers that atoi()
misread, pipelined requests, a proxy out of descriptors, and the engine's
steps, which must not put the database password in any argv or the
migration body in /tmp (they run inside the proxy: no process at all).

Before this, with no token (the default), a `Content-Type: text/plain` POST
from any web page paused all traffic; `Host: rebind.example` was answered;
`--admin 0.0.0.0:PORT` started without a token; 1.2 GB of headers were
buffered before the token was checked; `timeout_ms=1e300` ran as 1 ms and
`force=true` as not forced; `ps` showed the engine URI with its password."""
import http.client
import json
import os
import re
import socket
import subprocess
import time
import uuid

import pytest

from support import (BIN, child_processes, command_lines_with, free_port, pg_raw_session, port_open, Proxy,
                     raise_nofile, relay_direct, wait_for)


def raw_request(port, method, path, headers=None, body=b"", timeout=10):
    """One request exactly as given (no header added behind the caller's
    back); returns (status, parsed JSON or text)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            c.putheader(k, v)
        if body or method == "POST":
            c.putheader("Content-Length", str(len(body)))
        c.endheaders(body)
        r = c.getresponse()
        data = r.read().decode(errors="replace")
    finally:
        c.close()
    try:
        return r.status, json.loads(data)
    except ValueError:
        return r.status, data


def paused(p):
    code, st = p.admin("GET", "/status")
    assert code == 200, st
    return st["paused"]


@pytest.fixture
def proxies():
    started = []
    yield started
    for p in started:
        p.stop()


# ---- item 1: cross-site requests ---------------------------------------------------------

def test_cross_site_requests_are_refused(proxy_factory):
    """A browser page can send a text/plain POST without a preflight; it
    must not pause the proxy. An Origin that is not the admin address and
    a Host that is not it (DNS rebinding) are refused too."""
    p = proxy_factory(env={"PGTANDEM_ADMIN_TOKEN": ""})
    host = {"Host": "127.0.0.1:%d" % p.admin_port}
    code, body = raw_request(p.admin_port, "POST", "/pause?timeout_ms=1000",
                             dict(host, **{"Content-Type": "text/plain", "Origin": "http://evil.example"}), b"x")
    assert code in (403, 415), (code, body)
    code, body = raw_request(p.admin_port, "POST", "/pause?timeout_ms=1000",
                             dict(host, **{"Content-Type": "text/plain"}), b"x")
    assert code == 415, (code, body)
    assert "application/json" in body["error"], body
    assert not paused(p)
    # form posts and no content type at all: the same
    for ctype in ("application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        hs = dict(host, **({"Content-Type": ctype} if ctype else {}))
        code, body = raw_request(p.admin_port, "POST", "/pause?timeout_ms=1000", hs, b"")
        assert code == 415, (ctype, code, body)
    assert not paused(p)
    # JSON from another origin (it would need a preflight, but refuse it anyway)
    code, body = raw_request(p.admin_port, "POST", "/pause?timeout_ms=1000",
                             dict(host, **{"Content-Type": "application/json", "Origin": "http://evil.example"}))
    assert code == 403 and "Origin" in body["error"], (code, body)
    assert not paused(p)
    # DNS rebinding: the page's own host name reaches 127.0.0.1
    code, body = raw_request(p.admin_port, "GET", "/status", {"Host": "rebind.example"})
    assert code == 421, (code, body)
    code, body = raw_request(p.admin_port, "GET", "/status", {"Host": "rebind.example:%d" % p.admin_port})
    assert code == 421, (code, body)
    # the admin address itself, loopback names and same-origin requests work
    for h in ("127.0.0.1:%d" % p.admin_port, "localhost:%d" % p.admin_port, "localhost", "[::1]:%d" % p.admin_port):
        code, body = raw_request(p.admin_port, "GET", "/status", {"Host": h})
        assert code == 200, (h, code, body)
    code, body = raw_request(p.admin_port, "POST", "/pause?timeout_ms=1000",
                             dict(host, **{"Content-Type": "application/json",
                                           "Origin": "http://127.0.0.1:%d" % p.admin_port}))
    assert code == 200 and body["paused"], (code, body)
    code, body = p.admin("POST", "/resume")
    assert code == 200 and body["was_paused"], body


def test_cross_site_post_cannot_start_a_migration(proxy_factory, db):  # noqa: F811
    """POST /migrations with an `sql` operation, sent as text/plain from a
    web page, ran the SQL as the engine role."""
    p = proxy_factory(extra_args=["--engine-db", db], env={"PGTANDEM_ADMIN_TOKEN": ""})
    mig = {"name": "xsite", "parent": None,
           "operations": [{"sql": {"up": "CREATE TABLE xsite_marker (id int)", "down": "DROP TABLE xsite_marker"}}]}
    code, body = raw_request(p.admin_port, "POST", "/migrations",
                             {"Host": "127.0.0.1:%d" % p.admin_port, "Content-Type": "text/plain",
                              "Origin": "http://evil.example"}, json.dumps(mig).encode())
    assert code in (403, 415), (code, body)
    code, body = raw_request(p.admin_port, "POST", "/migrations",
                             {"Host": "127.0.0.1:%d" % p.admin_port, "Content-Type": "text/plain"},
                             json.dumps(mig).encode())
    assert code == 415, (code, body)
    code, cur = p.admin("GET", "/migrations/current")
    assert not (code == 200 and cur.get("name") == "xsite"), cur


def test_token_allows_any_host_and_no_json_needed(proxy_factory):
    """With a token a browser cannot forge the request, so the bearer
    header is enough: any Host (a proxy reached by its DNS name), any
    content type."""
    p = proxy_factory(token="s3cret-admin")
    auth = {"Authorization": "Bearer s3cret-admin"}
    code, body = raw_request(p.admin_port, "GET", "/status", dict(auth, Host="pgtandem.internal:6433"))
    assert code == 200, (code, body)
    code, body = raw_request(p.admin_port, "POST", "/pause?timeout_ms=1000", dict(auth, Host="pgtandem.internal"))
    assert code == 200 and body["paused"], (code, body)
    code, body = raw_request(p.admin_port, "POST", "/resume", {"Host": "127.0.0.1", "Content-Type": "application/json"})
    assert code == 401, (code, body)
    code, body = p.admin("POST", "/resume")
    assert code == 200 and body["was_paused"], body


def test_non_loopback_admin_without_token_refuses_to_start(cluster):
    port, aport = free_port(), free_port()
    env = dict(os.environ, PGTANDEM_ADMIN_TOKEN="")
    args = [BIN, "proxy", "--listen", "127.0.0.1:%d" % port, "--admin", "0.0.0.0:%d" % aport,
            "--upstream", "postgresql://%s:%d/?sslmode=require" % (cluster.host, cluster.port)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    try:
        out, _ = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError("the proxy started with --admin 0.0.0.0 and no token:\n" + out[-2000:])
    assert proc.returncode == 2, out
    assert "admin" in out and "token" in out and "0.0.0.0" in out, out
    # with a token it starts
    env["PGTANDEM_ADMIN_TOKEN"] = "t0ken"
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    try:
        code = wait_for(lambda: raw_request(aport, "GET", "/status", {"Host": "127.0.0.1",
                                                                       "Authorization": "Bearer t0ken"})[0]
                        if port_open(aport) else None, 15, "the admin port")
        assert code == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


# ---- item 2: bounded headers and body before authentication -------------------------------

def vmrss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"^VmRSS:\s+(\d+)", f.read(), re.M).group(1))


def _flood(port, first, chunk, total):
    """Sends `first` then `chunk` until `total` bytes or the proxy stops
    reading; returns (bytes sent, what the proxy answered)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    sent = 0
    try:
        s.sendall(first)
        s.settimeout(5)
        while sent < total:
            try:
                s.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError, socket.timeout):
                break
            sent += len(chunk)
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        got = b""
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                got += b
        except (ConnectionResetError, socket.timeout):
            pass
        return sent, got
    finally:
        s.close()


@pytest.mark.parametrize("shape", ["many_headers", "one_long_header", "long_request_line"])
def test_header_flood_is_bounded_before_the_token(proxy_factory, shape):
    p = proxy_factory(token="s3cret-admin")
    before = vmrss_kb(p.proc.pid)
    line = b"X-Filler: " + b"a" * 1000 + b"\r\n"
    first, chunk = {
        "many_headers": (b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n", line),
        "one_long_header": (b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: ", b"a" * 65536),
        "long_request_line": (b"GET /status?", b"a" * 65536),
    }[shape]
    sent, got = _flood(p.admin_port, first, chunk, 64 << 20)
    after = vmrss_kb(p.proc.pid)
    print("%s: sent %d MB; proxy RSS %d kB -> %d kB; answer %r" % (shape, sent >> 20, before, after, got[:60]))
    assert after - before < 8 * 1024, "RSS grew from %d kB to %d kB on %d MB of headers" % (before, after, sent >> 20)
    assert sent < 16 << 20, "the proxy read %d MB of headers" % (sent >> 20)
    # libevent 2.1 answers an over-long head with its own 400 and closes
    assert re.match(rb"HTTP/1\.1 (400|413|431) ", got) and b"Connection: close" in got, got[:200]
    assert p.admin("GET", "/status")[0] == 200


def test_body_over_the_limit_is_refused_before_the_token(proxy_factory):
    p = proxy_factory(token="s3cret-admin")
    before = vmrss_kb(p.proc.pid)
    head = b"POST /migrations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % (512 << 20)
    sent, got = _flood(p.admin_port, head, b"{" * 65536, 64 << 20)
    after = vmrss_kb(p.proc.pid)
    assert after - before < 8 * 1024, (before, after)
    assert got.startswith(b"HTTP/1.1 413"), got[:200]


# ---- item 9: numbers and booleans in query parameters -------------------------------------

@pytest.mark.parametrize("query", ["timeout_ms=1e300", "timeout_ms=1500abc", "timeout_ms=abc", "timeout_ms=",
                                   "timeout_ms=0", "timeout_ms=600001", "timeout_ms=1.5", "timeout_ms=-1"])
def test_pause_timeout_is_parsed_strictly(proxy, query):
    code, body = proxy.admin("POST", "/pause?" + query)
    assert code == 400, (query, code, body)
    value = query.split("=", 1)[1]
    assert body["error"] == ("query parameter \"timeout_ms\": '%s' is not an integer from 1 to 600000 (ms)" % value), \
        body
    assert not paused(proxy)


@pytest.mark.parametrize("query,word", [
    ("lock_timeout_ms=1e300", "an integer from 1 to 600000 (ms)"),
    ("drain_timeout_ms=2000x", "an integer from 1 to 600000 (ms)"),
    ("attempts=2.5", "an integer from 1 to 1000"),
    ("force=maybe", "true or false"),
    ("force=2", "true or false"),
])
def test_complete_options_are_parsed_strictly(proxy, query, word):
    code, body = proxy.admin("POST", "/migrations/current/complete?" + query)
    assert code == 400, (query, code, body)
    assert word in body["error"] and query.split("=")[0] in body["error"], body


@pytest.mark.parametrize("value", ["true", "false", "1", "0", "yes", "no", "on", "off", "TRUE"])
def test_force_accepts_the_usual_booleans(proxy, value):
    code, body = proxy.admin("POST", "/migrations/current/complete?force=" + value)
    assert code != 400, (value, code, body)


# ---- item 12: pipelining and a reserve descriptor --------------------------------------------

def _read_responses(s, want, timeout=10):
    """Reads up to `want` HTTP responses (Content-Length framed) until
    the connection closes or the deadline; returns their status codes."""
    buf, codes = b"", []
    s.settimeout(timeout)
    while len(codes) < want:
        m = re.match(rb"HTTP/1\.[01] (\d+)[^\r]*\r\n(.*?)\r\n\r\n", buf, re.S)
        if m:
            cl = re.search(rb"(?im)^content-length:\s*(\d+)", m.group(2))
            end = m.end() + (int(cl.group(1)) if cl else 0)
            if len(buf) >= end:
                codes.append(int(m.group(1)))
                buf = buf[end:]
                continue
        try:
            b = s.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        if not b:
            break
        buf += b
    return codes


def test_pipelined_requests_are_each_answered(proxy):
    s = socket.create_connection(("127.0.0.1", proxy.admin_port), timeout=10)
    try:
        one = b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        two = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        three = (b"POST /resume HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 0\r\n\r\n")
        s.sendall(one + two + three)
        codes = _read_responses(s, 3)
        assert codes == [200, 200, 200], codes
    finally:
        s.close()


def test_pipelined_requests_to_the_engine_are_each_answered(proxy_factory, db):  # noqa: F811
    """The /migrations routes answer later, from the engine's event loop."""
    p = proxy_factory(extra_args=["--engine-db", db])
    s = socket.create_connection(("127.0.0.1", p.admin_port), timeout=10)
    try:
        cur = b"GET /migrations/current HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        status = b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        throttle = (b"POST /migrations/current/throttle HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
        s.sendall(cur + status + cur + throttle + status)
        codes = _read_responses(s, 5)
        assert len(codes) == 5 and codes[1] == 200 and codes[4] == 200, codes
    finally:
        s.close()


def test_admin_answers_while_out_of_descriptors(cluster, proxies):
    """The relay's clients take every descriptor; the admin API still
    answers (a reserve descriptor is given up for it)."""
    if relay_direct():
        pytest.skip("needs the proxy")
    import resource
    p = Proxy(cluster)
    proxies.append(p)
    pid = p.proc.pid
    raise_nofile(4096)
    live = pg_raw_session(p.port, application_name="fd-live")
    waiting = []
    try:
        limit = len(os.listdir("/proc/%d/fd" % pid)) + 6
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
        for _ in range(limit):
            waiting.append(socket.create_connection(("127.0.0.1", p.port), timeout=10))
        wait_for(lambda: len(os.listdir("/proc/%d/fd" % pid)) >= limit, 10, "the proxy to fill its descriptors")
        for i in range(3):
            code, st = p.admin("GET", "/status", timeout=5)
            assert code == 200, (i, code, st)
        code, body = p.admin("POST", "/pause?timeout_ms=1000", timeout=5)
        assert code == 200 and body["paused"], body
        code, body = p.admin("POST", "/resume", timeout=5)
        assert code == 200, body
    finally:
        for s in waiting:
            s.close()
        live.close()
        p.stop(timeout=15)
        os.truncate(p.logfile.name, 0)


# ---- item 5: no secrets on command lines or in /tmp ------------------------------------------

def _tmp_files_with(marker, since):
    """Files under /tmp written since `since` that contain `marker`."""
    found, dirs = [], ["/tmp"]
    while dirs:
        try:
            entries = list(os.scandir(dirs.pop()))
        except OSError:
            continue
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    dirs.append(e.path)
                    continue
                st = e.stat(follow_symlinks=False)
                if not e.is_file(follow_symlinks=False) or st.st_mtime < since or st.st_size > 1 << 20:
                    continue
                with open(e.path, "rb") as f:
                    if marker.encode() in f.read():
                        found.append(e.path)
            except OSError:
                continue
    return found


def test_engine_step_starts_no_process_and_leaks_no_password_nor_body(cluster, proxy_factory, db):  # noqa: F811
    password = "pw-" + uuid.uuid4().hex
    role = "eng_" + uuid.uuid4().hex[:8]
    cluster.psql("CREATE ROLE %s LOGIN SUPERUSER PASSWORD '%s'" % (role, password))
    try:
        dbname = db.rsplit("/", 1)[1].split("?")[0]
        engine = cluster.uri(user=role, password=password, db=dbname)
        p = proxy_factory(env={"PGTANDEM_DB": engine})   # not on its own command line either
        marker = "marker_" + uuid.uuid4().hex
        mig = {"name": "secrets_check", "parent": None,
               "operations": [{"sql": {"up": "SELECT pg_sleep(3) /* %s */" % marker,
                                       "down": "SELECT 1 /* %s */" % marker}}]}
        since = time.time() - 1
        code, body = p.admin("POST", "/migrations", json.dumps(mig))
        assert code == 202, (code, body)
        deadline = time.time() + 90
        while time.time() < deadline:
            code, cur = p.admin("GET", "/migrations/current")
            children = child_processes(p.proc.pid)
            assert children == [], "the proxy started a process for the step: %r" % children
            leaks = command_lines_with(password) + _tmp_files_with(marker, since)
            assert not leaks, "the password on a command line or the body in /tmp: %r" % leaks
            if cur.get("phase") not in ("expanding",):
                break
            time.sleep(0.1)
        assert cur.get("phase") != "failed", cur
        assert cur.get("phase") != "expanding", cur
    finally:
        cluster.psql("DROP ROLE IF EXISTS %s" % role, check=False)

"""Helpers shared by the Python parts of the benchmark drivers: the bench
database on the throwaway cluster, a free port, the description of the machine and server
that every results file starts with, the bench migration (the three
`checks` renames of the seeds' production step, two of them to jsonb), and
a `pgtandem proxy` with its engine on the bench database."""
import datetime
import json
import os
import platform
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import psycopg

BENCH_MIGRATION = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_unify.json")


def bench_database():
    """Creates the database `bench` afresh on the cluster of $PGT_SUPER_URI;
    returns its URI."""
    admin = os.environ["PGT_SUPER_URI"]
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS bench")
        c.execute("CREATE DATABASE bench")
    return admin.replace("/appdb?", "/bench?")


def free_port():
    """A loopback port free now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=10):
    """Until something listens on the loopback port (a process just started)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("port %d did not open" % port)
            time.sleep(0.1)


def run_header(db):
    """date, machine and postgres: the fields every results file starts with."""
    version = subprocess.run(["psql", db, "-qAtX", "-c", "SHOW server_version"], capture_output=True,
                             text=True).stdout.strip()
    return {"date": datetime.datetime.utcnow().isoformat(timespec="seconds") + "Z",
            "machine": "%s, %d cpus" % (platform.platform(), os.cpu_count()),
            "postgres": version}


def rss_kb(pid):
    """Resident memory of a process, in kB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


IDLE_HOLDER = r'''
import sys, psycopg
uri, n = sys.argv[1], int(sys.argv[2])
conns = []
for i in range(n):
    c = psycopg.connect(uri, autocommit=True, application_name="idle")
    c.execute("SELECT 1")  # in session mode the client now owns a server connection
    conns.append(c)
print("ready", flush=True)
sys.stdin.readline()
'''


def rss_with_idle_clients(pid, uri, n):
    """The RSS (kB) of process `pid` while n idle clients, each having run
    one SELECT 1, are connected to `uri`; None when they could not connect."""
    import sys
    import time
    # psycopg's default wait function uses select(), which stops at fd 1024
    h = subprocess.Popen([sys.executable, "-c", IDLE_HOLDER, uri, str(n)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, env=dict(os.environ, PSYCOPG_WAIT_FUNC="wait_epoll"))
    if h.stdout.readline().strip() != "ready":
        h.kill()
        h.wait()
        return None
    time.sleep(1.0)  # settle: the last logins' buffers are freed
    held = rss_kb(pid)
    h.stdin.write("\n")
    h.stdin.flush()
    h.wait(timeout=300)
    return held


class EngineProxy:
    """`pgtandem proxy` (binary `binpath`) in front of the bench cluster
    ($PGT_PGPORT, TLS upstream), its engine on `db`, its log in
    WORK/proxy-TAG.log; `api` calls its admin API with `token`."""

    def __init__(self, tag, work, binpath, db, token):
        self.token = token
        self.port, self.aport = free_port(), free_port()
        self.log_path = os.path.join(work, "proxy-%s.log" % tag)
        up = "postgresql://127.0.0.1:%s/?sslmode=require" % os.environ["PGT_PGPORT"]
        self.proc = subprocess.Popen([binpath, "proxy", "--listen", "127.0.0.1:%d" % self.port, "--admin",
                                      "127.0.0.1:%d" % self.aport, "--log-level", "info", "--upstream", up,
                                      "--engine-db", db], stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT)
        wait_port(self.port)
        wait_port(self.aport)
        self.uri = "postgresql://postgres:postgres@127.0.0.1:%d/bench?sslmode=disable" % self.port

    def api(self, method, path, body=None):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.aport, path), method=method,
                                     data=json.dumps(body).encode() if body is not None else
                                     (b"" if method == "POST" else None),
                                     headers={"Authorization": "Bearer " + self.token})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

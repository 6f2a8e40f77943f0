"""What an idle client costs a transaction pool (the apps with tens of
thousands of mostly idle connections):

- 1,500 idle clients, each logged in with SCRAM and having run a query,
  cost the proxy under 1,200 bytes of resident memory each (PgBouncer 1.18
  spends 720-820 on this machine; pgtandem spent 2,500 while an idle
  client still kept its buffers, a second event, a copy of its startup
  packet, tracked values and credentials);
- what a burst of TLS clients freed is given back once they have left
  (SSL record buffers released while idle, the heap trimmed after the
  burst), instead of staying resident until the next burst.

Resident memory is what is measured, so these run on the release build
only: the sanitizer's allocator keeps redzones and quarantine of its own.
"""
import os
import subprocess
import sys

import pytest

from support import raise_nofile, relay_direct, wait_for, write_users_file

PW = "idlepass"
N = 1500

HOLDER = r'''
import sys, psycopg
uri, n = sys.argv[1], int(sys.argv[2])
conns = []
for i in range(n):
    c = psycopg.connect(uri, autocommit=True, application_name="idle")
    c.execute("SELECT 1")
    conns.append(c)
print("ready", flush=True)
sys.stdin.readline()
'''


def _rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def _proxy(cluster, proxy_factory, tmp_path):
    if relay_direct():
        pytest.skip("needs the proxy")
    if "asan" in os.path.basename(os.environ.get("PGTANDEM_BIN", "")):
        pytest.skip("resident memory under ASan is the sanitizer's")
    if raise_nofile(N + 300) < N + 100:
        pytest.skip("RLIMIT_NOFILE too low for %d clients" % N)
    cluster.psql("DROP ROLE IF EXISTS idlemem")
    cluster.psql("CREATE ROLE idlemem LOGIN PASSWORD '%s'" % PW)
    users = write_users_file(str(tmp_path / "users-idlemem.json"), {"idlemem": {"password": PW}})
    return proxy_factory(extra_args=["--auth", "scram", "--users-file", users, "--pool-mode", "transaction",
                                     "--max-client-conn", str(N + 100)])


def _connections(p):
    code, st = p.admin("GET", "/status")
    assert code == 200
    return st["connections"]


def _warm_up(p, uri):
    """The loop's tables and the pool's first login: paid once per process,
    not per client. Returns the resident memory once they have left."""
    Holder(uri, 100).close()
    wait_for(lambda: _connections(p) == 0, timeout=30, what="the warm-up clients gone")
    return _rss_kb(p.proc.pid)


class Holder:
    """n idle clients in a process of their own, connected until close()."""

    def __init__(self, uri, n):
        self.h = subprocess.Popen([sys.executable, "-c", HOLDER, uri, str(n)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True,
                                  env=dict(os.environ, PSYCOPG_WAIT_FUNC="wait_epoll"))
        assert self.h.stdout.readline().strip() == "ready", "the clients could not all log in"

    def close(self):
        self.h.stdin.write("\n")
        self.h.stdin.flush()
        self.h.wait(timeout=300)


def test_an_idle_pooled_client_costs_less_than_pgbouncers(cluster, proxy_factory, tmp_path):
    p = _proxy(cluster, proxy_factory, tmp_path)
    uri = p.uri(user="idlemem", password=PW)
    base = _warm_up(p, uri)
    h = Holder(uri, N)  # each client's SELECT 1 has been answered: it is idle
    try:
        per_client = (_rss_kb(p.proc.pid) - base) * 1024.0 / N
    finally:
        h.close()
    assert per_client < 1200, "%.0f bytes per idle client\n%s" % (per_client, p.log_tail())


def test_what_a_burst_of_tls_clients_freed_is_given_back(cluster, proxy_factory, tmp_path):
    p = _proxy(cluster, proxy_factory, tmp_path)
    uri = p.uri(user="idlemem", password=PW, sslmode="require")
    base = _warm_up(p, uri)
    n = 500
    h = Holder(uri, n)
    held = _rss_kb(p.proc.pid)
    h.close()
    # their TLS state is some 14 KB a client: 7 MB that must not stay resident
    assert held - base > n * 8, "the TLS clients cost less than expected: %d kB -> %d kB" % (base, held)
    wait_for(lambda: _rss_kb(p.proc.pid) < base + (held - base) // 4, timeout=30,
             what="the memory of %d TLS clients given back (%d kB before them, %d kB with them, %d kB now)" % (
                 n, base, held, _rss_kb(p.proc.pid)))

"""A fleet: several proxies in front of one database, each with an engine
connection and a lease (--fleet-lease-ms), following one migration. Making
one and waiting until every proxy sees every other live, completing through
one of them, and the clients a test spreads over them."""
import json
import os
import subprocess

import psycopg

from .checks import NAME, admin_url, start_migration, version_options
from .migrations import pmigrate
from .ports import BIN, TOP
from .proxy import status, wait_phase
from .wait import wait_for

__all__ = ["LEASE_MS", "fleet_proxy", "live_members", "wait_fleet", "make_fleet", "active_fleet",
           "complete_in_background", "db_uri", "old_release_left", "complete_via", "node_client", "node_after",
           "hold_open_transaction"]

LEASE_MS = 2000


def fleet_proxy(proxy_factory, cluster, dbname, lease_ms=LEASE_MS, upstream=None, engine_db=None, extra=()):
    """A proxy of the fleet on `dbname`: its engine on the cluster, or
    through `upstream` (conftest's Upstream: Postgres or the Neon-like front)
    or at `engine_db` when given; `extra`: more arguments."""
    if upstream is not None:
        return proxy_factory(upstream=upstream.uri, extra_args=["--engine-db", engine_db or upstream.db_uri(dbname),
                                                                "--fleet-lease-ms", str(lease_ms)] + list(extra))
    return proxy_factory(extra_args=["--engine-db", engine_db or cluster.uri(db=dbname),
                                     "--fleet-lease-ms", str(lease_ms)] + list(extra))


def live_members(proxy):
    """The listen addresses of the members `proxy` sees live, sorted."""
    fleet = status(proxy).get("fleet") or {}
    return sorted(m["listen"] for m in fleet.get("members", []) if m.get("live"))


def wait_fleet(proxies, timeout=30.0):
    """Waits until each of `proxies` sees exactly all of them live."""
    want = sorted("127.0.0.1:%d" % p.port for p in proxies)
    for p in proxies:
        wait_for(lambda p=p: live_members(p) == want, timeout, "fleet of %d seen by %d" % (len(proxies), p.port))
    return proxies


def make_fleet(proxy_factory, cluster, dbname, n=3, upstream=None, extra=None, timeout=30.0):
    """n fleet proxies on `dbname`, each seeing the others; extra[i]: a dict
    with proxy i's own "engine_db" and more "args"."""
    extra = extra or {}
    return wait_fleet([fleet_proxy(proxy_factory, cluster, dbname, upstream=upstream,
                                   engine_db=extra.get(i, {}).get("engine_db"), extra=extra.get(i, {}).get("args", ()))
                       for i in range(n)], timeout)


def active_fleet(proxy_factory, cluster, dbname, n=3):
    """n proxies, a migration started through the first, active on all."""
    proxies = make_fleet(proxy_factory, cluster, dbname, n)
    start_migration(proxies[0])
    for p in proxies:
        wait_phase(p, "active")
    return proxies


def complete_in_background(proxy):
    return subprocess.Popen([BIN, "migrate", "complete", "--json", "--proxy", admin_url(proxy)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def db_uri(proxy, dbname, versioned=False, extra=""):
    return proxy.uri(user="postgres", password="postgres", db=dbname, extra=extra)


def old_release_left(proxy):
    """Old-release sessions as the proxy's complete would count them: its own
    and the other live proxies' as of their last heartbeat."""
    st = status(proxy)
    fleet = st.get("fleet") or {}
    n = st.get("versions", {}).get("old", 0)
    for m in fleet.get("members", []):
        if m.get("live") and m.get("id") != fleet.get("id"):
            n += sum(v for k, v in (m.get("sessions") or {}).items() if k != NAME)
    return n


def complete_via(proxy, *extra):
    r = pmigrate(proxy, "complete", "--json", *extra)
    rep = json.loads(r.stdout) if r.stdout.strip().startswith("{") else {}
    return r, rep


def node_client(proxy, dbname):
    node_dir = os.path.join(TOP, "tests", "node")
    extra = "options=" + version_options().replace(" ", "%20").replace("=", "%3D")
    p = subprocess.Popen(["node", os.path.join(node_dir, "cutover.js"), db_uri(proxy, dbname, extra=extra), "7"],
                         cwd=node_dir, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    line = p.stdout.readline().split()
    assert line and line[0] == "ready", (line, p.stderr.read() if p.poll() is not None else "")
    return p


def node_after(p):
    out, err = p.communicate("go\n", timeout=60)
    assert p.returncode == 0, err
    after = out.split("\n")[0].split()
    assert after[0] == "after", out
    cols = after[1].split(",")
    assert "claim" in cols and "claim_text" not in cols, cols


def hold_open_transaction(proxy, dbname):
    """A session on `proxy` inside a transaction that touches nothing
    migrated: its proxy cannot drain until it ends. It declares the new
    version: an old-release session would refuse the complete by itself."""
    conn = psycopg.connect(db_uri(proxy, dbname), options=version_options())
    conn.execute("SELECT 1")
    return conn


"""The proxy runs its migration steps itself, and engines let go of their lock.

- A step caught mid-way (an expand blocked by an idle transaction's lock):
  the proxy has no child process, no command line on the machine carries
  the engine role's password, and the backend doing the expand is connected
  from a socket of the proxy's own process. A rollback then stops the step
  and undoes it.
- `migrate start` then `migrate rollback` straight after, from a script:
  the second command never finds the first one's advisory lock still held
  (the backend of a closed connection lets go a moment after its client).
"""
import os
import uuid

import psycopg
import pytest

from support import (call, child_processes, command_lines_with, current, items_migration, Proxy, run_pgtandem,
                     wait_for, wait_phase)

# How long to wait for what the proxy does next (the expand seen blocked: its
# poll of the blockers runs every second; the rollback under way). Nothing
# here is a claim about speed: what the first test checks is where the step
# runs and what the machine's command lines show, so the wait is generous
# for a loaded machine, and a failure shows the proxy's log.
WAIT = 30.0


def socket_inodes(pid):
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def inode_of_connection(local_port, remote_port):
    """The inode of the live socket from this local port to this remote
    port. Linux hands the same ephemeral port to connections towards
    different destinations, so the local port alone may name another
    process's socket (on a busy machine it did). A closed connection that
    used the same ports a moment ago may still be listed (TIME_WAIT), with
    inode 0: it belongs to no process and is skipped."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if (int(cols[1].rsplit(":", 1)[1], 16) == local_port and int(cols[2].rsplit(":", 1)[1], 16) == remote_port
                        and cols[9] != "0"):
                    return cols[9]
    return None


@pytest.fixture
def engine_role(env):
    """A superuser with a password nothing else on the machine has."""
    name = "eng_" + uuid.uuid4().hex[:8]
    password = "pw-" + uuid.uuid4().hex
    env.sql("CREATE ROLE %s LOGIN SUPERUSER PASSWORD '%s'" % (name, password))
    yield name, password
    for proxy in env.proxies:
        proxy.stop()
    env.sql("REASSIGN OWNED BY %s TO postgres; DROP OWNED BY %s" % (name, name))
    env.sql("DROP ROLE IF EXISTS %s" % name)


def test_a_blocked_step_runs_inside_the_proxy_with_no_child_and_no_password_on_a_command_line(env, engine_role):
    e = env
    name, password = engine_role
    engine_uri = "postgresql://%s:%s@%s:%d/%s?sslmode=require" % (name, password, e.cluster.host, e.cluster.port,
                                                                  e.dbname)
    # the URI goes in the environment: a command line is what `ps` shows everyone
    p = Proxy(e.cluster, extra_args=["--shutdown-timeout", "2"], env={"PGTANDEM_DB": engine_uri})
    e.proxies.append(p)
    assert command_lines_with(password) == []
    before = e.items_columns()
    holder = psycopg.connect(e.uri, connect_timeout=10)
    try:
        holder.execute("SET application_name = 'forgotten console'")
        holder.execute("SELECT * FROM items LIMIT 1")  # AccessShareLock, idle in transaction
        code, ans = call(p, "POST", "/migrations", items_migration())
        assert code == 202, ans
        wait_for(lambda: (lambda cur: cur.get("phase") == "expanding" and cur.get("blocked_by"))(current(p)), WAIT,
                 "the expand to wait on the lock", detail=p.log_tail)

        assert child_processes(p.proc.pid) == [], "the proxy started processes"
        assert command_lines_with(password) == [], "a command line carries the engine password"
        def engine_sockets():
            """The live sockets the engine role's backends are connected
            from, when each is a socket of the proxy's own process. A
            backend of an attempt before this one may still be listed while
            it exits: its socket is gone (no live inode) and is skipped."""
            ports = e.sql("SELECT client_port FROM pg_stat_activity WHERE application_name = 'pgtandem-migrate'"
                          " AND usename = %s AND state <> 'disabled'", (name,))
            live = [i for i in (inode_of_connection(r[0], e.cluster.port) for r in ports) if i]
            seen["ports"], seen["live"], seen["mine"] = ports, live, socket_inodes(p.proc.pid)
            return live if live and all(i in seen["mine"] for i in live) else None
        seen = {}
        inodes = wait_for(engine_sockets, WAIT, "the backends doing the expand, connected from the proxy's own process",
                          detail=lambda: "%r\n%s" % ({k: v for k, v in seen.items() if k != "mine"}, p.log_tail()))
        inode = ", ".join(inodes)
        threads = len(os.listdir("/proc/%d/task" % p.proc.pid))
        print("expand blocked: proxy pid %d, %d threads, no children; the expand's backend talks to socket %s of"
              " the proxy" % (p.proc.pid, threads, inode))

        # answered at once (202, the blocker named); the rollback goes on
        code, ans = call(p, "POST", "/migrations/current/rollback")
        assert code == 202 and ans["blocked_by"], (code, ans, p.log()[-3000:])
        wait_for(lambda: current(p).get("phase") == "rolling_back", WAIT, "the rollback to stop the expand",
                 detail=p.log_tail)
        holder.rollback()
        cur = wait_phase(p, ("rolled_back", "failed"), 60, what="the rollback")
        assert cur["phase"] == "rolled_back", cur
        assert e.items_columns() == before
        assert child_processes(p.proc.pid) == []
    finally:
        holder.close()


def test_start_then_rollback_straight_after_never_finds_the_lock_held(env, tmp_path):
    e = env
    path = tmp_path / "m.json"
    path.write_text(__import__("json").dumps(items_migration()))
    for i in range(8):
        r = run_pgtandem(["migrate", "start", str(path), "--db", e.uri, "--quiet"])
        assert r.returncode == 0, (i, r.stderr)
        r = run_pgtandem(["migrate", "rollback", "--db", e.uri])
        assert r.returncode == 0, (i, r.stderr)
        assert "advisory lock" not in r.stderr
    held = e.scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
    assert held == 0

"""A transaction pool that cannot log in upstream answers at once.

The case from the deployment: `pgtandem passwd app --verifier-only` writes a
verifier with a fresh salt; clients prove their password against it, but the
pool logs in upstream with the ClientKey recovered from their proof, which
only works when the database stores the same verifier. Before, the pool
tried again and again while every waiting client sat out the whole login
timeout and heard `57014 canceling authentication due to timeout`, the
cause only in the proxy's log. Now:

- the clients waiting on the first login all hear at once what is wrong and
  what to do (08006, naming the verifier and `pgtandem passwd --from-db`),
  and the log says it once per attempt, not in a loop;
- new clients are failed fast ("server login has been failing, try again
  later") until server_login_retry has passed, when one login is tried
  again;
- once the file is fixed (SIGHUP) a login is tried after the retry interval
  and clients get in; a pool whose upstream password is wrong passes on
  Postgres's own 28P01 and message the same way;
- `pgtandem passwd` by default stores what transaction pooling needs, and
  says which modes its file works for; `--from-db` stores the role's own
  verifier read from pg_authid.
"""
import json
import signal
import socket
import threading
import time

import psycopg
import pytest

from support import free_port, pg_error_fields, pg_login, run_pgtandem, wait_for, wait_log, write_users_file

PW = "loginpass"
ROLE = "loginfail"


@pytest.fixture
def role(cluster):
    cluster.psql("DROP ROLE IF EXISTS %s" % ROLE)
    cluster.psql("CREATE ROLE %s LOGIN PASSWORD '%s'" % (ROLE, PW))
    yield ROLE
    cluster.psql("DROP ROLE IF EXISTS %s" % ROLE)


def passwd(path, user, password, *flags):
    return run_pgtandem(["passwd", user, "--file", path] + list(flags), input=password + "\n")


def pool_proxy(proxy_factory, users_path, *extra):
    return proxy_factory(extra_args=["--auth", "scram", "--users-file", users_path, "--pool-mode", "transaction",
                                     "--pool-size", "4"] + list(extra))


def attempt(p, user=ROLE, password=PW, timeout=30):
    """One psycopg client: ("ok", None, seconds) or ("error", message, seconds)."""
    t0 = time.time()
    try:
        with psycopg.connect(p.uri(user=user, password=password), connect_timeout=timeout, autocommit=True) as c:
            c.execute("SELECT 1").fetchone()
        return "ok", None, time.time() - t0
    except psycopg.OperationalError as e:
        return "error", str(e), time.time() - t0


def raw_error(p, user=ROLE, password=PW):
    """The ErrorResponse of a login on the wire (libpq keeps the SQLSTATE of
    a failed connection to itself): (sqlstate, message)."""
    s = socket.create_connection(("127.0.0.1", p.port), timeout=30)
    try:
        t, payload = pg_login(s, user, "appdb", password, timeout=30)[-1]
    finally:
        s.close()
    assert t == b"E", (t, payload)
    f = pg_error_fields(payload)
    return f["C"], f["M"]


def many(p, n, **kw):
    out = [None] * n
    start = threading.Barrier(n)

    def one(i):
        start.wait()
        out[i] = attempt(p, **kw)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out


class Straight:
    """Postgres itself as many()'s target: logins that do not go through the proxy."""

    def __init__(self, cluster):
        self.cluster = cluster

    def uri(self, user, password):
        return self.cluster.uri(user=user, password=password)


def login_cost(cluster, n, **kw):
    """The slowest of n concurrent logins straight to Postgres: what a login
    takes on this machine right now, the baseline "at once" is measured from
    (an answer that waited for the next login attempt would come a retry
    interval later)."""
    results = many(Straight(cluster), n, **kw)
    assert all(k == "ok" for k, _, _ in results), results
    return max(t for _, _, t in results)


def login_attempts(p):
    return p.log().count("server login failed")


def test_clients_waiting_on_a_pool_that_cannot_log_in_hear_why_at_once(needs_proxy, cluster, proxy_factory, role,
                                                                       tmp_path):
    users = str(tmp_path / "users.json")
    r = passwd(users, role, PW, "--verifier-only")
    assert r.returncode == 0, r.stderr
    # the output says what the file is good for
    assert "only where the database stores this same verifier" in r.stderr and "--from-db" in r.stderr, r.stderr
    p = pool_proxy(proxy_factory, users, "--server-login-retry", "2")
    cost = login_cost(cluster, 20)
    results = many(p, 20)
    for kind, err, took in results:
        assert kind == "error", results
        assert took < cost + 2, "a client waited %.1f s for an answer (a login: %.1f s): %r" % (took, cost, results)
        assert "verifier" in err and "--from-db" in err, err
    # one login per retry interval, not a loop until the clients' timeout
    assert login_attempts(p) == 1, p.log_tail()
    # new clients are failed fast while the login keeps failing, with the reason
    kind, err, took = attempt(p)
    assert kind == "error" and took < cost + 2, (kind, err, took, cost)
    assert "server login has been failing, try again later" in err and "verifier" in err, err
    code, message = raw_error(p)
    assert code == "08006" and "try again later" in message, (code, message)
    code, pools = p.admin("GET", "/pools")
    mine = [q for q in pools["pools"] if q["user"] == role]
    assert code == 200 and mine and mine[0]["login_failing"] and mine[0]["login_failures_total"] == 1, pools
    assert "verifier" in mine[0]["last_error"], mine
    # ... and a login is tried again after the interval, its error said as is
    # (until then each client is failed fast, and no login is tried)
    code, message = wait_for(lambda: (lambda r: r if "try again later" not in r[1] else None)(raw_error(p)), 10,
                             "a login tried again after the 2 s retry interval", detail=p.log_tail)
    assert code == "08006", (code, message)
    assert message.startswith('the proxy cannot log in upstream as "%s"' % role) and "passwd" in message, message
    assert login_attempts(p) == 2, p.log_tail()

    # the file fixed: the role's own verifier, read from the database
    r = passwd(users, role, "", "--from-db", cluster.super_uri)
    assert r.returncode == 0, r.stderr
    assert "works for session and transaction pooling" in r.stderr, r.stderr
    with open(users) as f:
        stored = json.load(f)[role]
    assert stored == cluster.psql("SELECT rolpassword FROM pg_authid WHERE rolname = '%s'" % role)
    p.proc.send_signal(signal.SIGHUP)
    wait_log(p, "reload: configuration and TLS certificate reloaded")
    # within the retry interval a client may still be failed fast; after it, everyone gets in
    wait_for(lambda: attempt(p)[0] == "ok", timeout=10, what="a login after the retry interval",
             detail=p.log_tail)
    results = many(p, 20)
    assert all(k == "ok" for k, _, _ in results), results
    assert "server login works again" in p.log()
    mine = [q for q in p.admin("GET", "/pools")[1]["pools"] if q["user"] == role]
    assert not mine[0]["login_failing"] and mine[0]["last_error"] is None, mine


def test_a_wrong_upstream_password_is_postgres_own_28P01(needs_proxy, cluster, proxy_factory, role, tmp_path):
    # the proxy knows a password the database does not
    users = write_users_file(str(tmp_path / "users.json"), {role: {"password": "not-" + PW}})
    p = pool_proxy(proxy_factory, users, "--server-login-retry", "1")
    cost = login_cost(cluster, 20)
    results = many(p, 20, password="not-" + PW)
    for kind, err, took in results:
        assert kind == "error" and took < cost + 1, (cost, results)
        assert 'password authentication failed for user "%s"' % role in err, results
    code, message = raw_error(p, password="not-" + PW)
    assert code == "28P01" and 'password authentication failed for user "%s"' % role in message, (code, message)
    # fixed upstream: the database takes the password the file has
    cluster.psql("ALTER ROLE %s PASSWORD 'not-%s'" % (role, PW))
    wait_for(lambda: attempt(p, password="not-" + PW)[0] == "ok", timeout=10,
             what="a login once the upstream takes the password", detail=p.log_tail)


def test_an_unreachable_upstream_fails_waiters_at_once(needs_proxy, cluster, proxy_factory, tmp_path):
    users = write_users_file(str(tmp_path / "users.json"), {"app": {"password": "apppass"}})
    p = proxy_factory(upstream="postgresql://127.0.0.1:%d/?sslmode=disable" % free_port(),
                      extra_args=["--auth", "scram", "--users-file", users, "--pool-mode", "transaction",
                                  "--server-login-retry", "30"])
    # failed at once: not after the 30 s retry interval, nor the clients' own
    # 30 s timeout; what a login takes here (cost) and a couple of seconds
    cost = login_cost(cluster, 10, user="app", password="apppass")
    results = many(p, 10, user="app", password="apppass")
    for kind, err, took in results:
        assert kind == "error" and took < cost + 2, (cost, results)
    assert login_attempts(p) == 1, p.log_tail()
    kind, err, took = attempt(p, user="app", password="apppass")
    assert kind == "error" and took < cost + 2 and "try again later" in err, (kind, err, cost)
    code, _ = raw_error(p, user="app", password="apppass")
    assert code == "08006"


def test_passwd_default_works_for_transaction_pooling(needs_proxy, cluster, proxy_factory, role, tmp_path):
    users = str(tmp_path / "users.json")
    r = passwd(users, role, PW)
    assert r.returncode == 0, r.stderr
    assert PW not in r.stdout + r.stderr
    assert "session and transaction" in r.stderr, r.stderr
    with open(users) as f:
        entry = json.load(f)[role]
    assert entry["verifier"].startswith("SCRAM-SHA-256$4096:") and entry["password"] == PW, entry
    p = pool_proxy(proxy_factory, users)
    results = many(p, 10)
    assert all(k == "ok" for k, _, _ in results), results


def test_passwd_from_db_refuses_what_cannot_work(needs_proxy, cluster, tmp_path):
    users = str(tmp_path / "users.json")
    r = passwd(users, "no_such_role_here", "", "--from-db", cluster.super_uri)
    assert r.returncode == 1 and "no_such_role_here" in r.stderr, r.stderr
    cluster.psql("DROP ROLE IF EXISTS md5only")
    cluster.psql("SET password_encryption = 'md5'; CREATE ROLE md5only LOGIN PASSWORD 'x'")
    try:
        r = passwd(users, "md5only", "", "--from-db", cluster.super_uri)
        assert r.returncode == 1 and "md5" in r.stderr and "SCRAM" in r.stderr, r.stderr
    finally:
        cluster.psql("DROP ROLE IF EXISTS md5only")
    r = passwd(users, "app", "", "--from-db", cluster.uri(user="app", password="apppass"))
    assert r.returncode == 1 and "pg_authid" in r.stderr, r.stderr

"""A client's session state through transaction pooling, exactly as
Postgres keeps it for a connection of its own: every SET, RESET, RESET ALL,
SET ... TO DEFAULT, DISCARD ALL and startup parameter is the client's and
follows it to whichever server runs its next statement; no client ever sees
another's; SQL DEALLOCATE and DISCARD ALL act on the client's own
statements only.

- the loops that found the leak: one client SETs and RESETs through
  psycopg (which prepares a statement it runs five times, so the SET runs
  from a named statement's Bind, never a Parse) while another runs
  SELECT 1 or reads the setting: 0 wrong readings;
- psycopg's DEALLOCATE ALL (sent on rollback() once it has prepared
  statements) and DEALLOCATE name, on a pool of 1 shared with a second
  client: every execute afterwards answers, no `pgt_` name is ever seen;
- RESET goes back to the client's startup value (PGDATESTYLE, PGTZ, as
  pg_regress connects), and ParameterStatus says Postgres's spelling
  (client_encoding utf8 -> UTF8);
- a SET Postgres refuses is nobody's: booked as the client's, it was
  replayed ahead of its next transaction and failed again, rolling back the
  RESET of another client's client_min_messages run with it (what the
  regression suite through the pool showed as lost NOTICEs);
- the property test: clients over a pool of 2 (and of 1) run random SETs
  (some with values Postgres refuses), RESETs, SET LOCALs, RESET ALLs, DISCARD ALLs, protocol prepares, SQL
  DEALLOCATEs and executes, in and out of transaction blocks, each client
  checked against a model of what Postgres answers a connection of its own:
  0 wrong over at least 100,000 checks with a fixed seed.
"""
import os
import random
import subprocess
import threading

import psycopg
import pytest
from psycopg import pq

from support import LIBPQ_ENV, write_users_file

PW = "statepass"
USER = "poolstate"


@pytest.fixture
def state_role(cluster):
    cluster.psql("DROP ROLE IF EXISTS %s" % USER, check=False)
    cluster.psql("CREATE ROLE %s LOGIN PASSWORD '%s'" % (USER, PW))
    yield
    cluster.psql("DROP ROLE IF EXISTS %s" % USER, check=False)


def state_pool(proxy_factory, tmp_path, size, extra=()):
    users = write_users_file(str(tmp_path / "state-users.json"), {USER: {"password": PW}})
    return proxy_factory(extra_args=["--auth", "scram", "--users-file", users, "--pool-mode", "transaction",
                                     "--pool-size", str(size)] + list(extra))


def client_uri(p, extra=""):
    return p.uri(user=USER, password=PW, extra=extra)


def test_a_set_run_from_a_prepared_statement_follows_its_client_only(needs_proxy, cluster, proxy_factory, tmp_path,
                                                                       state_role):
    p = state_pool(proxy_factory, tmp_path, 20)
    uri = client_uri(p)
    wrong = {"set": 0, "reset": 0, "leaked": 0}
    n = 300

    def setter():
        with psycopg.connect(uri, autocommit=True) as c:
            default = c.execute("SHOW search_path").fetchone()[0]
            for _ in range(n):
                c.execute("SET search_path TO pg_catalog")
                wrong["set"] += c.execute("SHOW search_path").fetchone()[0] != "pg_catalog"
                c.execute("RESET search_path")
                wrong["reset"] += c.execute("SHOW search_path").fetchone()[0] != default

    def quiet_setter():
        with psycopg.connect(uri, autocommit=True) as c:
            for _ in range(n):
                c.execute("SET client_min_messages = warning")
                c.execute("RESET client_min_messages")

    def reader():
        with psycopg.connect(uri, autocommit=True) as c:
            for _ in range(2 * n):
                c.execute("SELECT 1")
                wrong["leaked"] += c.execute("SHOW client_min_messages").fetchone()[0] != "notice"

    threads = [threading.Thread(target=f) for f in (setter, quiet_setter, reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == {"set": 0, "reset": 0, "leaked": 0}, wrong


def raw_client(uri):
    c = pq.PGconn.connect(uri.encode())
    assert c.status == pq.ConnStatus.OK, c.error_message
    return c


def show(c, name, simple=True):
    r = c.exec_(b"SHOW " + name) if simple else c.exec_params(b"SHOW " + name, [])
    assert r.status == pq.ExecStatus.TUPLES_OK, r.error_message
    return r.get_value(0, 0).decode()


@pytest.mark.parametrize("simple", [True, False], ids=["simple", "extended"])
def test_a_set_that_fails_is_nobodys(needs_proxy, cluster, proxy_factory, tmp_path, state_role, simple):
    """The regression suite through the pool lost other tests' NOTICEs: a
    SET that failed (guc.sql and many others try values Postgres refuses)
    was booked as the client's anyway, and replayed ahead of its next
    transaction on another server, where it failed again and took the
    whole replay with it, the RESET of another client's
    client_min_messages included, which the pool had booked as done.
    On a pool of one server: A quiets its messages, B's SET fails, then A,
    B and C take the server in turn."""
    p = state_pool(proxy_factory, tmp_path, 1)
    a, b, c = (raw_client(client_uri(p)) for _ in range(3))
    try:
        run = (lambda conn, q: conn.exec_(q)) if simple else (lambda conn, q: conn.exec_params(q, []))
        assert run(a, b"SET client_min_messages TO warning").status == pq.ExecStatus.COMMAND_OK
        r = run(b, b"SET statement_timeout TO 'bogus'")
        assert r.error_field(pq.DiagnosticField.SQLSTATE) == b"22023", r.error_message
        r = run(b, b"SET search_path TO pg_catalog")   # in the same replay as the failed one
        assert r.status == pq.ExecStatus.COMMAND_OK, r.error_message
        for _ in range(3):
            assert show(a, b"client_min_messages", simple) == "warning"
            assert show(b, b"client_min_messages", simple) == "notice"
            assert show(b, b"statement_timeout", simple) == "0"
            assert show(b, b"search_path", simple) == "pg_catalog"
            assert show(c, b"client_min_messages", simple) == "notice"
            assert show(c, b"search_path", simple) == '"$user", public'
        # a SET in a block pins its client (a ROLLBACK undoes it), which
        # keeps the one server: B leaves, and its server with it
        assert run(b, b"BEGIN").status == pq.ExecStatus.COMMAND_OK
        assert run(b, b"SET client_min_messages TO error").status == pq.ExecStatus.COMMAND_OK
        assert run(b, b"SELECT 1/0").status == pq.ExecStatus.FATAL_ERROR
        assert run(b, b"ROLLBACK").status == pq.ExecStatus.COMMAND_OK
        assert show(b, b"client_min_messages", simple) == "notice"
        b.finish()
        assert show(a, b"client_min_messages", simple) == "warning"
        assert show(c, b"client_min_messages", simple) == "notice"
    finally:
        for conn in (a, b, c):
            conn.finish()


def sync_pipeline(c):
    """Ends a libpq pipeline with a Sync and reads its results up to it:
    their statuses, the Sync's last."""
    c.pipeline_sync()
    while c.flush():
        pass
    statuses = []
    while not statuses or statuses[-1] != pq.ExecStatus.PIPELINE_SYNC:
        r = c.get_result()
        if r is not None:
            statuses.append(r.status)
    return statuses


def test_a_set_bound_after_its_units_error_is_nobodys(needs_proxy, cluster, proxy_factory, tmp_path, state_role):
    """Extended protocol: after an error Postgres skips every message up to
    the Sync. A prepared SET bound after the error reached the client (a
    pipeline flushed, its error read, then the Bind and the Sync) never
    runs, so it is not the client's, nor any server's. Booked before when
    its ReadyForQuery came: the client's next server got the SET."""
    p = state_pool(proxy_factory, tmp_path, 1)
    a, b = raw_client(client_uri(p)), raw_client(client_uri(p))
    try:
        r = a.prepare(b"quiet", b"SET client_min_messages TO error")
        assert r.status == pq.ExecStatus.COMMAND_OK, r.error_message
        a.enter_pipeline_mode()
        a.send_query_params(b"SELECT 1/0", [])
        a.send_flush_request()
        while a.flush():
            pass
        r = a.get_result()
        assert r.status == pq.ExecStatus.FATAL_ERROR, r.status
        assert a.get_result() is None
        a.send_query_prepared(b"quiet", [])
        statuses = sync_pipeline(a)
        assert statuses == [pq.ExecStatus.PIPELINE_ABORTED, pq.ExecStatus.PIPELINE_SYNC], statuses
        a.exit_pipeline_mode()
        for _ in range(2):   # on its server, then after another client had it
            assert show(a, b"client_min_messages") == "notice"
            assert show(b, b"client_min_messages") == "notice"
    finally:
        a.finish()
        b.finish()


def test_sets_pipelined_past_the_bound_pin_their_client(needs_proxy, cluster, proxy_factory, tmp_path, state_role):
    """Each SET in flight is held by the proxy until its answer: a client
    that pipelines more than 64 keeps its server instead (pinned), and its
    settings are still exactly its own."""
    p = state_pool(proxy_factory, tmp_path, 2)
    a = raw_client(client_uri(p))
    try:
        a.enter_pipeline_mode()
        for i in range(100):
            a.send_query_params(("SET statement_timeout TO '%ds'" % (i + 1)).encode(), [])
        statuses = sync_pipeline(a)
        a.exit_pipeline_mode()
        assert statuses == [pq.ExecStatus.COMMAND_OK] * 100 + [pq.ExecStatus.PIPELINE_SYNC], statuses
        assert show(a, b"statement_timeout") == "100s"
        pinned = [x["pinned"] for x in p.admin("GET", "/status")[1]["sessions"]]
        assert pinned == ["too many SETs in flight"], pinned
    finally:
        a.finish()
    with psycopg.connect(client_uri(p), autocommit=True) as other:
        assert other.execute("SHOW statement_timeout").fetchone()[0] == "0"


@pytest.mark.parametrize("reset_always", [False, True], ids=["default", "reset_always"])
def test_a_set_inside_a_function_and_server_reset_query_always(needs_proxy, cluster, proxy_factory, tmp_path,
                                                               state_role, reset_always):
    """A SET run inside a function (gin.sql's explain_query_json, brin.sql's
    DO block) or by set_config() changes the server's session where the
    pool sees no SET. By default, as with PgBouncer, it stays on the server
    for whoever borrows it next; with server_reset_query_always the next
    client starts from the login's settings (RESET ALL), its own SETs
    replayed after it. Both shown, so the documented limit is checked."""
    p = state_pool(proxy_factory, tmp_path, 1,
                   ("--server-reset-query-always", "true" if reset_always else "false"))
    fn = "pgt_quiet_%d" % os.getpid()
    cluster.psql("CREATE OR REPLACE FUNCTION public.%s() RETURNS int LANGUAGE plpgsql AS "
                 "$$ BEGIN SET enable_bitmapscan = off; PERFORM set_config('client_min_messages', 'error', false); "
                 "RETURN 1; END $$" % fn)
    a, b = raw_client(client_uri(p)), raw_client(client_uri(p))
    try:
        assert a.exec_(b"SET statement_timeout TO '7s'").status == pq.ExecStatus.COMMAND_OK
        assert a.exec_(("SELECT public.%s()" % fn).encode()).status == pq.ExecStatus.TUPLES_OK
        seen = (show(b, b"enable_bitmapscan"), show(b, b"client_min_messages"), show(b, b"statement_timeout"))
        if reset_always:
            assert seen == ("on", "notice", "0"), seen
        else:
            assert seen == ("off", "error", "0"), seen   # the limit, as PgBouncer has it
        assert show(a, b"statement_timeout") == "7s"   # the client's own SET replayed after the reset
        assert show(b, b"statement_timeout", simple=False) == "0"
    finally:
        a.finish()
        b.finish()
        cluster.psql("DROP FUNCTION IF EXISTS public.%s()" % fn, check=False)


def test_deallocate_acts_on_the_clients_own_statements_only(needs_proxy, cluster, proxy_factory, tmp_path,
                                                            state_role):
    p = state_pool(proxy_factory, tmp_path, 1)
    uri = client_uri(p)
    with psycopg.connect(uri, prepare_threshold=0) as a, psycopg.connect(uri, prepare_threshold=0) as b:
        # one transaction at a time: the pool has one server
        for i in range(3):
            assert a.execute("SELECT %s::int + 1", [i]).fetchone() == (i + 1,)
            a.commit()
            assert b.execute("SELECT %s::int + 1", [i]).fetchone() == (i + 1,)
            b.commit()
        # psycopg sends DEALLOCATE ALL after the ROLLBACK once it has
        # prepared statements
        a.execute("SELECT 1")
        a.rollback()
        for i in range(3):
            assert b.execute("SELECT %s::int + 1", [i]).fetchone() == (i + 1,)
            b.commit()
            assert a.execute("SELECT %s::int + 1", [i]).fetchone() == (i + 1,)
            a.commit()
    # by hand, with libpq: a protocol-level statement deallocated with SQL
    conn_a = pq.PGconn.connect(uri.encode())
    conn_b = pq.PGconn.connect(uri.encode())
    try:
        for c in (conn_a, conn_b):
            assert c.prepare(b"s1", b"SELECT 41 + 1").status == pq.ExecStatus.COMMAND_OK
        assert conn_a.exec_(b"DEALLOCATE s1").status == pq.ExecStatus.COMMAND_OK
        gone = conn_a.exec_prepared(b"s1", None)
        assert gone.status == pq.ExecStatus.FATAL_ERROR
        assert gone.error_field(pq.DiagnosticField.SQLSTATE) == b"26000"
        assert b'"s1"' in gone.error_field(pq.DiagnosticField.MESSAGE_PRIMARY), gone.error_message
        twice = conn_a.exec_(b"DEALLOCATE s1")
        assert twice.error_field(pq.DiagnosticField.SQLSTATE) == b"26000"
        assert b"pgt_" not in twice.error_message, twice.error_message
        # the other client's statement of the same text still runs
        assert conn_b.exec_prepared(b"s1", None).get_value(0, 0) == b"42"
        assert conn_a.prepare(b"s1", b"SELECT 41 + 1").status == pq.ExecStatus.COMMAND_OK
        assert conn_a.exec_(b"DEALLOCATE ALL").status == pq.ExecStatus.COMMAND_OK
        assert conn_b.exec_prepared(b"s1", None).get_value(0, 0) == b"42"
        assert conn_a.exec_prepared(b"s1", None).error_field(pq.DiagnosticField.SQLSTATE) == b"26000"
        assert conn_b.exec_(b"DISCARD ALL").status == pq.ExecStatus.COMMAND_OK
        assert conn_b.exec_prepared(b"s1", None).error_field(pq.DiagnosticField.SQLSTATE) == b"26000"
        assert conn_a.prepare(b"s1", b"SELECT 41 + 1").status == pq.ExecStatus.COMMAND_OK
        assert conn_a.exec_prepared(b"s1", None).get_value(0, 0) == b"42"
    finally:
        conn_a.finish()
        conn_b.finish()
    # a new connection finds every statement it prepares
    with psycopg.connect(uri, prepare_threshold=0, autocommit=True) as c:
        for i in range(3):
            assert c.execute("SELECT %s::int + 1", [i]).fetchone() == (i + 1,)


def psql_lines(p, statements, env_extra):
    """psql running each statement as a query of its own (DISCARD ALL
    cannot run in the implicit transaction of several)."""
    env = {k: v for k, v in os.environ.items() if k not in LIBPQ_ENV}
    env.update(PGPASSWORD=PW, **env_extra)
    args = ["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(p.port), "-U", USER,
            "-d", "appdb"]
    for sql in statements:
        args += ["-c", sql]
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [x for x in out.stdout.split("\n") if x and x not in ("SET", "RESET", "DISCARD ALL")]


def test_reset_goes_back_to_the_clients_startup_value(needs_proxy, cluster, proxy_factory, tmp_path, state_role):
    p = state_pool(proxy_factory, tmp_path, 2)
    regress = {"PGDATESTYLE": "Postgres, MDY", "PGTZ": "PST8PDT"}
    with psycopg.connect(client_uri(p), autocommit=True) as other:
        for _ in range(3):  # the servers also serve a client with the defaults
            lines = psql_lines(p, ["SET datestyle TO ymd", "SET timezone TO 'UTC'", "RESET datestyle",
                                   "RESET timezone", "SHOW datestyle", "SHOW timezone", "SET datestyle TO ymd",
                                   "RESET ALL", "SHOW datestyle", "SET timezone TO 'UTC'", "DISCARD ALL",
                                   "SHOW timezone"], regress)
            assert lines == ["Postgres, MDY", "PST8PDT", "Postgres, MDY", "PST8PDT"], lines
            assert other.execute("SHOW datestyle").fetchone()[0] == "ISO, MDY"
    # Postgres's spelling in ParameterStatus, as direct
    for uri in (client_uri(p, "client_encoding=utf8"), cluster.uri(user=USER, password=PW) + "&client_encoding=utf8"):
        c = pq.PGconn.connect(uri.encode())
        try:
            assert c.status == pq.ConnStatus.OK, c.error_message
            assert c.parameter_status(b"client_encoding") == b"UTF8", uri
        finally:
            c.finish()


# ---- the property test ----

CARRIED = {  # parameter: values a client SETs (Postgres shows them as written)
    "search_path": ["pg_catalog", "public", "public, pg_catalog"],
    "statement_timeout": ["5s", "10s", "1min"],
    "client_min_messages": ["warning", "error", "log"],
    "extra_float_digits": ["0", "2", "-3"],
    "DateStyle": ["SQL, MDY", "German, DMY", "ISO, DMY"],
    "TimeZone": ["UTC", "Europe/Paris", "America/New_York"],
}
CHECK_SQL = ("SELECT " + ", ".join("current_setting('%s')" % k for k in CARRIED)).encode()
STATEMENTS = [b"s_a", b"s_b", b"s_c"]


class Model:
    """What Postgres answers one connection of its own: the session's
    values, a transaction's pending ones, the statements it prepared."""

    def __init__(self, defaults):
        self.defaults = dict(defaults)
        self.session = dict(defaults)
        self.tx = None        # values as the open transaction sees them (None: no block)
        self.local = {}       # SET LOCAL in the open block
        self.statements = set()

    def seen(self):
        v = dict(self.tx if self.tx is not None else self.session)
        v.update(self.local)
        return v


class Client:
    def __init__(self, uri, rng, defaults):
        self.c = pq.PGconn.connect(uri.encode())
        assert self.c.status == pq.ConnStatus.OK, self.c.error_message
        self.rng = rng
        self.m = Model(defaults)
        self.checks = 0
        self.wrong = []

    def run(self, sql, params=None, expect_ok=True):
        """Simple or extended protocol at random, as drivers do."""
        r = self.c.exec_(sql) if params is None and self.rng.random() < 0.5 else self.c.exec_params(sql, params or [])
        if expect_ok and r.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
            self.wrong.append("%s: %s" % (sql, r.error_message))
        return r

    def check(self):
        r = self.run(CHECK_SQL)
        if r.status != pq.ExecStatus.TUPLES_OK:
            return
        want = self.m.seen()
        for i, k in enumerate(CARRIED):
            self.checks += 1
            got = r.get_value(0, i).decode()
            if got != want[k]:
                self.wrong.append("%s: %r, the model says %r" % (k, got, want[k]))

    def step(self):
        rng, m = self.rng, self.m
        k = rng.choice(list(CARRIED))
        op = rng.random()
        values = m.tx if m.tx is not None else m.session
        if op < 0.04 and k != "search_path":   # a value Postgres refuses: nobody's, in or out of a block
            r = self.run(("SET %s TO 'bogus'" % k).encode(), expect_ok=False)
            self.expect_error(r, b"22023", "SET %s TO 'bogus'" % k)
        elif op < 0.25:
            v = rng.choice(CARRIED[k])
            self.run(("SET %s TO '%s'" % (k, v)).encode() if k != "search_path" else
                     ("SET search_path TO %s" % v).encode())
            values[k] = v
            m.local.pop(k, None)
        elif op < 0.35:
            self.run(("RESET %s" % k).encode())
            values[k] = m.defaults[k]
            m.local.pop(k, None)
        elif op < 0.40:
            self.run(("SET %s TO DEFAULT" % k).encode())
            values[k] = m.defaults[k]
            m.local.pop(k, None)
        elif op < 0.44:
            self.run(b"RESET ALL")
            values.update(m.defaults)
            m.local.clear()
        elif op < 0.48 and m.tx is None:
            self.run(b"DISCARD ALL")
            m.session.update(m.defaults)
            m.statements.clear()
        elif op < 0.56 and m.tx is None:  # a transaction block, committed or rolled back
            self.run(b"BEGIN")
            m.tx = dict(m.session)
        elif op < 0.62 and m.tx is not None:
            v = rng.choice(CARRIED[k])
            self.run(("SET LOCAL %s TO '%s'" % (k, v)).encode() if k != "search_path" else
                     ("SET LOCAL search_path TO %s" % v).encode())
            m.local[k] = v
        elif op < 0.70 and m.tx is not None:
            commit = rng.random() < 0.5
            self.run(b"COMMIT" if commit else b"ROLLBACK")
            if commit:
                m.session = m.tx
            m.tx, m.local = None, {}
        elif op < 0.78:
            name = rng.choice(STATEMENTS)
            r = self.c.prepare(name, b"SELECT current_setting('search_path'), $1::int")
            if name in m.statements:
                self.expect_error(r, b"42P05", "PREPARE %s twice" % name)
            else:
                self.ok(r, "PREPARE %s" % name)
                m.statements.add(name)
        elif op < 0.88:
            name = rng.choice(STATEMENTS)
            r = self.c.exec_prepared(name, [b"7"])
            if name in m.statements:
                self.ok(r, "EXECUTE %s" % name)
                if r.status == pq.ExecStatus.TUPLES_OK:
                    self.checks += 1
                    want = m.seen()["search_path"]
                    if r.get_value(0, 0).decode() != want or r.get_value(0, 1) != b"7":
                        self.wrong.append("EXECUTE %s: %r, the model says %r" % (name, r.get_value(0, 0), want))
            else:
                self.expect_error(r, b"26000", "EXECUTE %s not prepared" % name)
        elif op < 0.95:
            name = rng.choice(STATEMENTS)
            r = self.run(b"DEALLOCATE " + name, expect_ok=False)
            if name in m.statements:
                self.ok(r, "DEALLOCATE %s" % name)
                m.statements.discard(name)
            else:
                self.expect_error(r, b"26000", "DEALLOCATE %s not prepared" % name)
        else:
            self.run(b"DEALLOCATE ALL")
            m.statements.clear()
        if m.tx is not None and self.c.transaction_status == pq.TransactionStatus.INERROR:
            self.wrong.append("a transaction block failed")
            self.c.exec_(b"ROLLBACK")
            m.tx, m.local = None, {}
        self.check()

    def ok(self, r, what):
        self.checks += 1
        if r.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
            self.wrong.append("%s: %s" % (what, r.error_message))

    def expect_error(self, r, sqlstate, what):
        self.checks += 1
        got = r.error_field(pq.DiagnosticField.SQLSTATE)
        if got != sqlstate or b"pgt_" in (r.error_message or b""):
            self.wrong.append("%s: %r %s" % (what, got, r.error_message))
        if self.m.tx is not None:  # the error aborted the block, as it would direct
            self.c.exec_(b"ROLLBACK")
            self.m.tx, self.m.local = None, {}


def run_property(uri, defaults, seed, clients, steps):
    out = []

    def one(i):
        cl = Client(uri, random.Random(seed * 1000 + i), defaults)
        try:
            for _ in range(steps):
                cl.step()
                if len(cl.wrong) > 20:
                    break
        finally:
            cl.c.finish()
        out.append(cl)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(c.checks for c in out), [w for c in out for w in c.wrong[:5]]


# bench/pool_state.sh runs it longer with a seed of its own
SEED = int(os.environ.get("PGT_STATE_SEED", "11"))
STEPS = int(os.environ.get("PGT_STATE_STEPS", "1500"))
CLIENTS = int(os.environ.get("PGT_STATE_CLIENTS", "6"))


@pytest.mark.parametrize("pool_size", [2, 1])
def test_session_state_through_the_pool_against_a_model(needs_proxy, cluster, proxy_factory, tmp_path, state_role,
                                                        pool_size):
    p = state_pool(proxy_factory, tmp_path, pool_size)
    direct = pq.PGconn.connect(cluster.uri(user=USER, password=PW).encode())
    r = direct.exec_(CHECK_SQL)
    defaults = {k: r.get_value(0, i).decode() for i, k in enumerate(CARRIED)}
    direct.finish()
    # the model is checked against a connection of its own first: a model
    # that is wrong about Postgres would fail here, not blame the pool
    checks, wrong = run_property(cluster.uri(user=USER, password=PW), defaults, 7, 1, 300)
    assert not wrong, wrong
    checks, wrong = run_property(client_uri(p), defaults, SEED + pool_size, CLIENTS, STEPS)
    print("[pool state] pool of %d, seed %d: %d clients x %d steps, %d checks, %d wrong"
          % (pool_size, SEED + pool_size, CLIENTS, STEPS, checks, len(wrong)))
    assert not wrong, wrong
    assert checks >= 50000 * STEPS * CLIENTS // 9000, checks  # 50,000 at the defaults


def test_the_pid_a_pooled_client_is_told_names_no_backend(needs_proxy, cluster, proxy_factory, tmp_path, state_role):
    """What the operator's guide says of the PID in transaction pooling:
    the proxy's own number, which pg_terminate_backend() cannot reach, while
    pg_backend_pid() answers the server that runs the statement."""
    p = state_pool(proxy_factory, tmp_path, 2)
    c = pq.PGconn.connect(client_uri(p).encode())
    try:
        told = c.backend_pid
        running = int(c.exec_(b"SELECT pg_backend_pid()").get_value(0, 0))
        assert told != running
        r = c.exec_(("SELECT pg_terminate_backend(%d)" % told).encode())
        assert r.get_value(0, 0) == b"f", r.error_message
        assert c.exec_(b"SELECT 1").get_value(0, 0) == b"1"  # still connected
    finally:
        c.finish()

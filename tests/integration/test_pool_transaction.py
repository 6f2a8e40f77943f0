"""pool_mode "transaction" (issue 23): the proxy lends a server connection per
transaction from pools it logs in itself, behind its own SCRAM.

- many clients against a role capped at 50 connections (Postgres's 53300
  beyond): direct, pgbench -c 200 aborts; through a pool of 20 it runs with
  0 failed transactions and never more than 20 server connections;
- an unpinned client really moves between server connections, and the
  parameters Postgres reports (TimeZone, application_name ...) and the
  session-level SETs it ran (statement_timeout, pgjdbc's
  extra_float_digits ...) follow it there and never leak to the next
  borrower;
- each kind of state a pool cannot carry (a SET inside a transaction block,
  SQL PREPARE, LISTEN, WITH HOLD cursors, session
  advisory locks, temporary tables) pins the client to its server
  connection, keeps that state working, and shows in /status;
- named protocol statements of psycopg, asyncpg, node-postgres, pgjdbc and
  pgbench -M prepared are prepared on whichever server runs them, shared
  between clients, and never pin; the unnamed statement (libpq's PQprepare
  with "") follows its client to the next server as Postgres keeps it,
  compared step by step with direct connections; a Parse of a name not
  closed is refused with 42P05 and aborts what Postgres aborts;
- the wait queue answers with 53300 after query_wait_timeout; a server
  terminated between transactions is replaced without the client noticing;
- transaction mode without auth scram is refused at start.
"""
import os
import shutil
import socket
import subprocess
import threading
import time

import psycopg
import pytest

from support import BIN, PeakSampler, promtool_check, Scrape, TOP, wait_for, write_users_file

JDBC_JAR = "/usr/share/java/postgresql.jar"  # Debian's libpostgresql-jdbc-java

PW = "poolpass"


def _role(cluster, name, limit=None):
    cluster.psql("DROP ROLE IF EXISTS %s" % name)
    cluster.psql("CREATE ROLE %s LOGIN PASSWORD '%s'%s" % (name, PW, " CONNECTION LIMIT %d" % limit if limit else ""))
    cluster.psql("GRANT ALL ON SCHEMA public TO %s" % name)
    cluster.psql("GRANT ALL ON ALL TABLES IN SCHEMA public TO %s" % name)


def _pool_proxy(proxy_factory, tmp_path, user, *extra):
    users = write_users_file(str(tmp_path / ("users-%s.json" % user)), {user: {"password": PW}})
    return proxy_factory(extra_args=["--auth", "scram", "--users-file", users, "--pool-mode", "transaction"]
                         + list(extra))


def _uri(p, user, extra=""):
    return p.uri(user=user, password=PW, extra=extra)


def _connect(p, user):
    # prepare_threshold=None: psycopg would otherwise prepare named statements
    # after five runs, which pins (tested on its own below)
    return psycopg.connect(_uri(p, user), autocommit=True, prepare_threshold=None)


def _server_pids(cluster, user):
    return int(cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = '%s'" % user))


def _session_of(p, application_name):
    code, st = p.admin("GET", "/status")
    assert code == 200
    for s in st["sessions"]:
        if s.get("application_name") == application_name:
            return s
    return None


def test_transaction_mode_needs_proxy_authentication(cluster):
    r = subprocess.run([BIN, "proxy", "--upstream", "postgresql://%s:%d/" % (cluster.host, cluster.port),
                        "--pool-mode", "transaction", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "pool_mode transaction needs auth scram" in r.stderr


def test_two_hundred_clients_over_a_role_capped_at_fifty(needs_proxy, cluster, proxy_factory, tmp_path):
    _role(cluster, "poolcap", limit=50)
    cluster.psql("DROP TABLE IF EXISTS pool_counter; CREATE TABLE pool_counter (id int PRIMARY KEY, n bigint)")
    cluster.psql("INSERT INTO pool_counter SELECT g, 0 FROM generate_series(1, 200) g")
    cluster.psql("GRANT ALL ON pool_counter TO poolcap")
    script = tmp_path / "bump.sql"
    script.write_text("\\set id random(1, 200)\nBEGIN;\nUPDATE pool_counter SET n = n + 1 WHERE id = :id;\n"
                      "SELECT pg_sleep(0.002);\nEND;\n")
    direct = subprocess.run(["pgbench", "-n", "-c", "200", "-j", "2", "-T", "2", "-f", str(script),
                             cluster.uri(user="poolcap", password=PW)], capture_output=True, text=True, timeout=120)
    assert direct.returncode != 0 and "too many connections" in direct.stderr, direct.stderr[-2000:]

    p = _pool_proxy(proxy_factory, tmp_path, "poolcap", "--pool-size", "20")
    with PeakSampler(lambda: _server_pids(cluster, "poolcap")) as servers:
        # a number of transactions, not a duration: 200 logins under ASan on a busy machine take seconds
        r = subprocess.run(["pgbench", "-n", "-c", "200", "-j", "2", "-t", "20", "-f", str(script),
                            _uri(p, "poolcap")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:] + p.log()[-3000:]
    assert "number of failed transactions: 0 " in r.stdout, r.stdout
    done = int([l for l in r.stdout.splitlines() if "actually processed" in l][0].split(":")[1].split("/")[0])
    assert done == 200 * 20
    # every transaction that pgbench counted is in the table, no more, no less
    assert int(cluster.psql("SELECT sum(n) FROM pool_counter")) == done
    assert 0 < servers.peak <= 20, "server connections peaked at %d" % servers.peak


def test_an_unpinned_client_moves_and_its_parameters_move_with_it(needs_proxy, cluster, proxy_factory, tmp_path):
    _role(cluster, "poolmove")
    p = _pool_proxy(proxy_factory, tmp_path, "poolmove", "--pool-size", "3")
    a = _connect(p, "poolmove")
    b = _connect(p, "poolmove")
    a.execute("SET TimeZone TO 'Asia/Tokyo'")
    a.execute("SET application_name TO 'mover'")
    # not reported by Postgres: carried by the pool as the client wrote them
    a.execute("SET statement_timeout = '4321ms'")
    a.execute("SET extra_float_digits = 3")
    a.execute("SET work_mem TO '8MB'")
    a.execute("RESET work_mem")
    pid_a = a.execute("SELECT pg_backend_pid()").fetchone()[0]
    # b takes the server a just gave back (the only idle one) and keeps it
    b.execute("BEGIN")
    pid_b = b.execute("SELECT pg_backend_pid()").fetchone()[0]
    assert pid_b == pid_a, "b should have borrowed a's idle server"
    # the parameters a set stayed a's: b sees the defaults on the same backend
    assert b.execute("SHOW TimeZone").fetchone()[0] != "Asia/Tokyo"
    assert b.execute("SELECT current_setting('application_name')").fetchone()[0] != "mover"
    assert b.execute("SHOW statement_timeout").fetchone()[0] == "0"
    assert b.execute("SHOW extra_float_digits").fetchone()[0] == "1"
    # a moves to another server and finds its parameters there
    pid_a2, tz, app = a.execute("SELECT pg_backend_pid(), current_setting('TimeZone'), "
                                "current_setting('application_name')").fetchone()
    assert pid_a2 != pid_a
    assert (tz, app) == ("Asia/Tokyo", "mover")
    assert a.execute("SHOW statement_timeout").fetchone()[0] == "4321ms"
    assert a.execute("SHOW extra_float_digits").fetchone()[0] == "3"
    assert a.execute("SHOW work_mem").fetchone()[0] == "4MB"
    assert a.info.parameter_status("TimeZone") == "Asia/Tokyo"
    b.execute("COMMIT")
    s = _session_of(p, "mover")
    assert s is not None and s["pinned"] is None
    a.close()
    b.close()
    assert "pinned" not in p.log()


PIN_CASES = [
    ("set_in_a_transaction", "BEGIN; SET statement_timeout TO '4321ms'; COMMIT", "SHOW statement_timeout", "4321ms",
     "SET statement_timeout"),
    ("search_path_in_a_transaction", "BEGIN; SET search_path TO pg_catalog, public; COMMIT", "SHOW search_path",
     "pg_catalog, public", "SET search_path"),
    ("prepare", "PREPARE pinned_q AS SELECT 41 + 1", "EXECUTE pinned_q", 42, "PREPARE"),
    ("listen", "LISTEN pinned_channel", "SELECT count(*) FROM pg_listening_channels()", 1, "LISTEN"),
    ("with_hold", "DECLARE pinned_c CURSOR WITH HOLD FOR SELECT 7 FROM generate_series(1, 10)", "FETCH pinned_c", 7,
     "WITH HOLD"),
    ("advisory", "SELECT pg_advisory_lock(424242)",
     "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 424242 AND pid = pg_backend_pid()", 1,
     "pg_advisory_lock()"),
    ("temp_table", "CREATE TEMP TABLE pinned_t AS SELECT 5 AS v", "SELECT v FROM pinned_t", 5, "temporary object"),
]


@pytest.mark.parametrize("name,setup,probe,expect,reason", PIN_CASES, ids=[c[0] for c in PIN_CASES])
def test_state_the_pool_cannot_carry_pins_the_client(needs_proxy, cluster, proxy_factory, tmp_path, name, setup,
                                                     probe, expect, reason):
    user = "poolpin_" + name
    _role(cluster, user)
    p = _pool_proxy(proxy_factory, tmp_path, user, "--pool-size", "3")
    a = psycopg.connect(_uri(p, user, "application_name=pinned-" + name), autocommit=True, prepare_threshold=None)
    b = _connect(p, user)
    a.execute(setup)
    pid_a = a.execute("SELECT pg_backend_pid()").fetchone()[0]
    # another client that borrows now gets another server: a's stays a's
    b.execute("BEGIN")
    assert b.execute("SELECT pg_backend_pid()").fetchone()[0] != pid_a
    for _ in range(3):
        assert a.execute("SELECT pg_backend_pid()").fetchone()[0] == pid_a
        assert a.execute(probe).fetchone()[0] == expect
    b.execute("COMMIT")
    s = _session_of(p, "pinned-" + name)
    assert s is not None and s["pinned"] and reason in s["pinned"], s
    a.close()
    b.close()
    log = p.log()
    assert log.count("pinned to its server connection") == 1, log[-2000:]


CLIENTS, ROUNDS, POOL = 8, 60, 3


def _check_moved_and_shared(p, user, rows, most, clients=CLIENTS, rounds=ROUNDS):
    """Every answer came back (rows), clients moved between servers (most
    backends one client saw), statements were prepared on demand on each
    server and then found there (the pool's hit and miss counts), and
    nothing pinned."""
    assert rows == 2 * clients * rounds
    assert most >= 2, "no client ever moved to another server connection"
    code, pools = p.admin("GET", "/pools")
    mine = [x for x in pools["pools"] if x["user"] == user][0]
    assert mine["prepared_misses_total"] <= 2 * POOL + 2 * clients, mine  # once per server, give or take re-Parse
    assert mine["prepared_hits_total"] >= 2 * clients * rounds - mine["prepared_misses_total"], mine
    assert pools["pinned_sessions"] == 0 and "pinned" not in p.log()


def _run_pooled_client(p, user, argv):
    """Runs a client program that prints "ok <rows> <most backends one
    client saw>", and checks what it did to the pool."""
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr + p.log()[-3000:]
    _, rows, most = r.stdout.split()
    _check_moved_and_shared(p, user, int(rows), int(most))


def test_psycopg_prepared_statements_move_between_servers(needs_proxy, cluster, proxy_factory, tmp_path):
    _role(cluster, "poolpsy")
    p = _pool_proxy(proxy_factory, tmp_path, "poolpsy", "--pool-size", str(POOL))
    results, errors = [], []

    def client(k):
        try:
            # prepare_threshold=0: every statement is a named server-side one from its first run
            with psycopg.connect(_uri(p, "poolpsy"), autocommit=True, prepare_threshold=0) as c:
                pids = set()
                for i in range(ROUNDS):
                    v, pid = c.execute("SELECT %s::int + 1, pg_backend_pid()", (i,)).fetchone()
                    assert v == i + 1
                    pids.add(pid)
                    assert c.execute("SELECT %s::text || %s::text", ("a", str(k))).fetchone()[0] == "a%d" % k
                results.append(len(pids))
        except Exception as e:  # reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    _check_moved_and_shared(p, "poolpsy", 2 * CLIENTS * ROUNDS, max(results))


def _unnamed_statement_steps(a, b, c):
    """libpq's PQprepare with an empty name, then PQexecPrepared of it: a
    Parse "" and a Bind "" in two Syncs. Between them b holds the server a
    used (in a transaction), so through the pool a runs on another one; c
    leaves an unnamed statement of its own on a server a may borrow next.
    What a hears at each step, and the backends a ran on."""
    def outcome(res):
        if res.status == psycopg.pq.ExecStatus.TUPLES_OK:
            return ("rows", res.get_value(0, 0).decode())
        if res.status == psycopg.pq.ExecStatus.COMMAND_OK:
            return ("ok", res.nfields)
        return ("error", (res.error_field(psycopg.pq.DiagnosticField.SQLSTATE) or b"").decode())

    def backend(conn):
        return int(conn.pgconn.exec_(b"SELECT pg_backend_pid()").get_value(0, 0))

    pa, steps = a.pgconn, []
    steps.append(outcome(pa.prepare(b"", b"SELECT ($1::int + 1)::text")))
    first = backend(a)  # a simple query: the unnamed statement is gone after it, in Postgres too
    steps.append(outcome(pa.exec_prepared(b"", [b"1"])))
    steps.append(outcome(pa.prepare(b"", b"SELECT ($1::int + 1)::text")))
    b.execute("BEGIN")
    held = b.execute("SELECT pg_backend_pid()").fetchone()[0]
    steps.append(outcome(pa.exec_prepared(b"", [b"41"])))
    steps.append(outcome(pa.describe_prepared(b"")))
    steps.append(outcome(pa.exec_prepared(b"", [b"99"])))
    steps.append(outcome(pa.prepare(b"", b"SELEC broken")))  # fails: Postgres drops the old one first
    steps.append(outcome(pa.exec_prepared(b"", [b"1"])))
    c.pgconn.prepare(b"", b"SELECT 'not yours'::text")
    steps.append(outcome(pa.exec_prepared(b"", [])))
    b.execute("COMMIT")
    return steps, first, held


def test_an_unnamed_statement_follows_its_client_to_another_server(needs_proxy, cluster, proxy_factory, tmp_path):
    _role(cluster, "poolunnamed")
    p = _pool_proxy(proxy_factory, tmp_path, "poolunnamed", "--pool-size", "3")
    direct = [psycopg.connect(cluster.uri(user="poolunnamed", password=PW), autocommit=True) for _ in range(3)]
    pooled = [_connect(p, "poolunnamed") for _ in range(3)]
    try:
        want, _, _ = _unnamed_statement_steps(*direct)
        got, first, held = _unnamed_statement_steps(*pooled)
    finally:
        for conn in direct + pooled:
            conn.close()
    # Postgres's answers, step by step: the statement, 26000 once it is gone
    assert want == [("ok", 0), ("error", "26000"), ("ok", 0), ("rows", "42"), ("ok", 1), ("rows", "100"),
                    ("error", "42601"), ("error", "26000"), ("error", "26000")]
    assert got == want
    assert held == first, "b should have borrowed the server a prepared on"
    code, pools = p.admin("GET", "/pools")
    assert code == 200 and pools["pinned_sessions"] == 0


def _answer(res):
    """A libpq result as the client hears it: rows, ok, or the error's
    SQLSTATE and primary message."""
    st = psycopg.pq.ExecStatus
    if res.status == st.TUPLES_OK:
        return ("rows", res.get_value(0, 0).decode() if res.ntuples else None)
    if res.status == st.COMMAND_OK:
        return ("ok",)
    if res.status == st.PIPELINE_ABORTED:
        return ("skipped",)
    field = psycopg.pq.DiagnosticField
    return ("error", (res.error_field(field.SQLSTATE) or b"").decode(),
            (res.error_field(field.MESSAGE_PRIMARY) or b"").decode())


def _pipeline(pc, *sends):
    """The messages `sends` queue, then one Sync; every answer up to it."""
    pc.enter_pipeline_mode()
    for send in sends:
        send()
    pc.pipeline_sync()
    answers = []
    while True:
        res = pc.get_result()
        if res is None:
            continue  # the end of one command's results
        if res.status == psycopg.pq.ExecStatus.PIPELINE_SYNC:
            break
        answers.append(_answer(res))
    pc.exit_pipeline_mode()
    return answers


def _duplicate_name_steps(conn, table):
    """A Parse of a name the client has not closed, alone, inside a
    transaction block, and in a pipeline after an INSERT: what the client
    hears at each step, and what the INSERTs left."""
    pc, steps = conn.pgconn, []
    steps.append(_answer(pc.prepare(b"dup", b"SELECT 'first'::text")))
    steps.append(_answer(pc.prepare(b"dup", b"SELECT 'second'::text")))
    steps.append(_answer(pc.exec_prepared(b"dup", [])))
    steps.append(_answer(pc.exec_(b"BEGIN")))
    steps.append(_answer(pc.exec_(("INSERT INTO %s VALUES (1)" % table).encode())))
    steps.append(_answer(pc.prepare(b"dup", b"SELECT 'third'::text")))
    steps.append(_answer(pc.exec_(b"SELECT 1")))
    steps.append(_answer(pc.exec_(b"COMMIT")))
    # the error ends the implicit transaction: the INSERT before it is rolled back
    steps += _pipeline(pc, lambda: pc.send_query_params(("INSERT INTO %s VALUES (2)" % table).encode(), None),
                       lambda: pc.send_prepare(b"dup", b"SELECT 'fourth'::text"),
                       lambda: pc.send_query_prepared(b"dup", None))
    steps.append(_answer(pc.exec_prepared(b"dup", [])))
    steps.append(_answer(pc.exec_(("SELECT count(*)::text FROM %s" % table).encode())))
    return steps


def test_a_parse_of_a_name_not_closed_is_refused_as_postgres_does(needs_proxy, cluster, proxy_factory, tmp_path):
    _role(cluster, "pooldup")
    cluster.psql("DROP TABLE IF EXISTS dup_direct, dup_pooled; CREATE TABLE dup_direct (v int); "
                 "CREATE TABLE dup_pooled (v int); GRANT ALL ON dup_direct, dup_pooled TO pooldup")
    p = _pool_proxy(proxy_factory, tmp_path, "pooldup", "--pool-size", "3")
    with psycopg.connect(cluster.uri(user="pooldup", password=PW), autocommit=True) as direct:
        want = _duplicate_name_steps(direct, "dup_direct")
    with _connect(p, "pooldup") as pooled:
        got = _duplicate_name_steps(pooled, "dup_pooled")
    dup = ("error", "42P05", 'prepared statement "dup" already exists')
    assert want == [("ok",), dup, ("rows", "first"), ("ok",), ("ok",), dup,
                    ("error", "25P02", "current transaction is aborted, commands ignored until end of transaction "
                                       "block"), ("ok",), ("ok",), dup, ("skipped",), ("rows", "first"), ("rows", "0")]
    assert got == want
    code, pools = p.admin("GET", "/pools")
    assert code == 200 and pools["pinned_sessions"] == 0


def test_asyncpg_statement_cache_through_the_pool(needs_proxy, cluster, proxy_factory, tmp_path):
    _role(cluster, "poolasync")
    p = _pool_proxy(proxy_factory, tmp_path, "poolasync", "--pool-size", str(POOL))
    script = tmp_path / "asyncpg_pool.py"
    script.write_text("""
import asyncio, sys
import asyncpg

async def client(uri, k, rounds):
    c = await asyncpg.connect(uri)
    pids = set()
    for i in range(rounds):
        v, pid = await c.fetchrow("SELECT $1::int + 1, pg_backend_pid()", i)
        assert v == i + 1, (v, i)
        pids.add(pid)
        s = await c.fetchval("SELECT $1::text || $2::text", "a", str(k))
        assert s == "a%d" % k, s
    await c.close()
    return len(pids)

async def main(uri, n, rounds):
    res = await asyncio.gather(*(client(uri, k, rounds) for k in range(n)))
    print("ok", 2 * n * rounds, max(res))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
""")
    _run_pooled_client(p, "poolasync", ["/usr/bin/python3", str(script), _uri(p, "poolasync"), str(CLIENTS),
                                        str(ROUNDS)])


def test_node_postgres_named_statements_through_the_pool(needs_proxy, cluster, proxy_factory, tmp_path):
    _role(cluster, "poolnode")
    p = _pool_proxy(proxy_factory, tmp_path, "poolnode", "--pool-size", str(POOL))
    _run_pooled_client(p, "poolnode", ["node", os.path.join(TOP, "tests", "node", "pooled.js"), _uri(p, "poolnode"),
                                       str(CLIENTS), str(ROUNDS)])


def test_pgjdbc_server_prepared_statements_through_the_pool(needs_proxy, cluster, proxy_factory, tmp_path):
    _role(cluster, "pooljdbc")
    p = _pool_proxy(proxy_factory, tmp_path, "pooljdbc", "--pool-size", str(POOL))
    _run_pooled_client(p, "pooljdbc", ["java", "-cp", JDBC_JAR,
                                       os.path.join(TOP, "tests", "clients", "PooledPrepared.java"),
                                       "jdbc:postgresql://127.0.0.1:%d/appdb?sslmode=disable" % p.port, "pooljdbc",
                                       PW, str(CLIENTS), str(ROUNDS)])


def test_pgbench_prepared_through_the_pool(needs_proxy, cluster, proxy_factory, tmp_path):
    """pgbench -M prepared prepares each statement with a blocking call on
    first use, so clients sharing a thread would wait on each other's
    servers: one thread per client, as with any transaction pooler."""
    _role(cluster, "poolbench")
    cluster.psql("DROP TABLE IF EXISTS pool_bench; CREATE TABLE pool_bench (id int PRIMARY KEY, n bigint)")
    cluster.psql("INSERT INTO pool_bench SELECT g, 0 FROM generate_series(1, 50) g; GRANT ALL ON pool_bench TO poolbench")
    script = tmp_path / "bump.sql"
    script.write_text("\\set id random(1, 50)\nBEGIN;\nUPDATE pool_bench SET n = n + 1 WHERE id = :id;\n"
                      "SELECT n FROM pool_bench WHERE id = :id;\nEND;\n")
    p = _pool_proxy(proxy_factory, tmp_path, "poolbench", "--pool-size", "4")
    r = subprocess.run(["pgbench", "-n", "-M", "prepared", "-c", "16", "-j", "16", "-t", "30", "-f", str(script),
                        _uri(p, "poolbench")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:] + p.log()[-3000:]
    assert "number of failed transactions: 0 " in r.stdout, r.stdout
    done = int([l for l in r.stdout.splitlines() if "actually processed" in l][0].split(":")[1].split("/")[0])
    assert done == 16 * 30
    assert int(cluster.psql("SELECT sum(n) FROM pool_bench")) == done
    code, pools = p.admin("GET", "/pools")
    mine = [x for x in pools["pools"] if x["user"] == "poolbench"][0]
    assert mine["prepared_hits_total"] > mine["prepared_misses_total"] > 0, mine


def test_a_client_that_waits_too_long_hears_53300(needs_proxy, cluster, proxy_factory, tmp_path):
    _role(cluster, "poolwait")
    p = _pool_proxy(proxy_factory, tmp_path, "poolwait", "--pool-size", "1", "--query-wait-timeout", "1")
    a = _connect(p, "poolwait")
    a.execute("BEGIN")
    a.execute("SELECT 1")
    b = _connect(p, "poolwait")
    t0 = time.monotonic()
    with pytest.raises(psycopg.OperationalError) as e:
        b.execute("SELECT 1")
    assert 0.9 < time.monotonic() - t0 < 10
    # a FATAL, as PgBouncer's: libpq reports the text, the log the SQLSTATE
    assert "no server connection within query_wait_timeout (1 s)" in str(e.value)
    assert "query_wait_timeout (1 s): pool for database appdb, user poolwait has 1 of 1 in use [53300]" in p.log()
    a.execute("COMMIT")
    # the pool serves the next client as soon as the server is back
    with _connect(p, "poolwait") as c:
        assert c.execute("SELECT 2").fetchone()[0] == 2
    code, pools = p.admin("GET", "/pools")
    assert code == 200
    mine = [x for x in pools["pools"] if x["user"] == "poolwait"]
    assert mine and mine[0]["wait_timeouts_total"] == 1
    a.close()


def test_a_server_terminated_between_transactions_is_replaced(needs_proxy, cluster, proxy_factory, tmp_path):
    _role(cluster, "poolkill")
    p = _pool_proxy(proxy_factory, tmp_path, "poolkill", "--pool-size", "2")
    a = _connect(p, "poolkill")
    pid = a.execute("SELECT pg_backend_pid()").fetchone()[0]
    cluster.psql("SELECT pg_terminate_backend(%d)" % pid)
    wait_for(lambda: _server_pids(cluster, "poolkill") == 0, 10, "the backend to go")
    for i in range(3):
        assert a.execute("SELECT %s::int", (i,)).fetchone()[0] == i
    assert a.execute("SELECT pg_backend_pid()").fetchone()[0] != pid
    a.close()


def test_terminate_between_transactions_keeps_the_server(needs_proxy, cluster, proxy_factory, tmp_path):
    _role(cluster, "poolbye")
    p = _pool_proxy(proxy_factory, tmp_path, "poolbye", "--pool-size", "2")
    pids = set()
    for _ in range(5):
        with _connect(p, "poolbye") as c:
            pids.add(c.execute("SELECT pg_backend_pid()").fetchone()[0])
    assert len(pids) == 1, "each client's Terminate must not end the pooled server"
    s = socket.create_connection(("127.0.0.1", p.port))
    s.close()


def test_cancel_reaches_the_server_the_client_uses_now(needs_proxy, cluster, proxy_factory, tmp_path):
    _role(cluster, "poolcancel")
    p = _pool_proxy(proxy_factory, tmp_path, "poolcancel", "--pool-size", "2")
    a = _connect(p, "poolcancel")
    b = _connect(p, "poolcancel")
    a.cancel()  # between transactions: nothing to cancel, nothing breaks
    assert a.execute("SELECT 1").fetchone()[0] == 1
    done = []

    def sleeper():
        try:
            a.execute("SELECT pg_sleep(30)")
            done.append("finished")
        except psycopg.errors.QueryCanceled:
            done.append("canceled")

    t = threading.Thread(target=sleeper)
    t0 = time.monotonic()
    t.start()
    wait_for(lambda: int(cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'poolcancel'"
                                      " AND query LIKE 'SELECT pg_sleep%' AND state = 'active'")) == 1, 10,
             "the sleep to run")
    a.cancel()
    t.join(20)
    assert done == ["canceled"] and time.monotonic() - t0 < 15
    # the server it used goes back to the pool once the cancel was delivered, and serves on
    for c in (a, b):
        assert c.execute("SELECT pg_sleep(0.2), 7").fetchone()[1] == 7
    a.close()
    b.close()


def test_pool_servers_are_the_fleets_not_bypassing_sessions(needs_proxy, cluster, proxy_factory, tmp_path):
    """With --engine-db the proxy is in the fleet: its pool's server
    connections, lent or idle, are listed as its own backends (asked with
    pg_backend_pid(), as behind Neon's proxy), never as sessions that
    bypass every proxy."""
    _role(cluster, "poolfleet")
    users = write_users_file(str(tmp_path / "users-fleet.json"), {"poolfleet": {"password": PW}})
    p = proxy_factory(extra_args=["--auth", "scram", "--users-file", users, "--pool-mode", "transaction",
                                  "--pool-size", "3", "--engine-db", cluster.uri(db="appdb")])
    conns = [_connect(p, "poolfleet") for _ in range(3)]
    for c in conns:
        c.execute("BEGIN")
        c.execute("SELECT 1")
    pids = {c.execute("SELECT pg_backend_pid()").fetchone()[0] for c in conns}
    for c in conns:
        c.execute("COMMIT")
    assert len(pids) == 3

    def fleet():
        code, st = p.admin("GET", "/status")
        return st.get("fleet") or {}

    wait_for(lambda: fleet().get("connected"), 15, "the fleet membership")
    listed = "SELECT count(*) FROM pgtandem.proxies WHERE backend_pids @> ARRAY[%s]::bigint[]" % ",".join(
        str(x) for x in sorted(pids))
    wait_for(lambda: cluster.psql(listed) == "1", 15, "the pool servers in this proxy's row")
    assert not [b for b in fleet().get("bypassing", []) if b["pid"] in pids], fleet()
    for c in conns:
        c.close()


def test_pool_metrics_show_active_idle_waiting_and_pinned(needs_proxy, cluster, proxy_factory, tmp_path):
    _role(cluster, "poolmet")
    p = _pool_proxy(proxy_factory, tmp_path, "poolmet", "--pool-size", "2", "--query-wait-timeout", "30")
    pinned, busy, waiter = _connect(p, "poolmet"), _connect(p, "poolmet"), _connect(p, "poolmet")
    done = threading.Event()
    try:
        pinned.execute("SELECT pg_advisory_lock(42)")  # session state: pins its server for good
        busy.execute("BEGIN")
        busy.execute("SELECT 1")  # holds the other server until COMMIT
        t = threading.Thread(target=lambda: (waiter.execute("SELECT 1"), done.set()))
        t.start()
        wait_for(lambda: p.admin("GET", "/pools")[1]["pools"][0]["clients_waiting"] == 1, what="a waiting client")
        code, text = p.admin("GET", "/metrics")
        assert code == 200
        s = Scrape(text)
        mine = dict(user="poolmet", database="appdb")
        assert s.get("pgtandem_pool_servers", state="active", **mine) == 2, text
        assert s.get("pgtandem_pool_servers", state="idle", **mine) == 0, text
        assert s.get("pgtandem_pool_clients_waiting", **mine) == 1, text
        assert s.get("pgtandem_pool_clients_pinned", **mine) == 1, text
        assert s.get("pgtandem_pool_longest_wait_seconds", **mine) > 0, text
        assert s.get("pgtandem_pool_lends_total", **mine) >= 2, text
        assert "# TYPE pgtandem_pool_waits_total counter" in text
        if shutil.which("promtool"):
            promtool_check(text)
        busy.execute("COMMIT")
        t.join(30)
        assert done.is_set()
        code, text = p.admin("GET", "/metrics")
        s = Scrape(text)
        assert s.get("pgtandem_pool_clients_waiting", **mine) == 0, text
        assert s.get("pgtandem_pool_waits_total", **mine) >= 1, text
        assert s.get("pgtandem_pool_max_wait_seconds", **mine) > 0, text
    finally:
        for c in (pinned, busy, waiter):
            c.close()

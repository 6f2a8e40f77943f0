"""Client libraries through the relay: psycopg 3 (parameterised queries,
server-side prepared statements, transactions, pipeline mode, binary
format, server-side cursors) and node-postgres."""
import os
import subprocess

import psycopg
import pytest
from psycopg import sql

from support import TOP


@pytest.fixture
def table(relay):
    with psycopg.connect(relay.uri(), autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS relay_clients")
        c.execute("CREATE TABLE relay_clients (id int primary key, v text, j jsonb, b bytea)")
    yield "relay_clients"
    with psycopg.connect(relay.uri(), autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS relay_clients")


def test_psycopg_parameterised(relay, table):
    with psycopg.connect(relay.uri()) as conn:
        cur = conn.cursor()
        cur.execute("SELECT %s::int + %s::int, %s::text, %s::text IS NULL", (40, 2, "héllo", None))
        assert cur.fetchone() == (42, "héllo", True)
        cur.executemany("INSERT INTO relay_clients (id, v, j, b) VALUES (%s, %s, %s, %s)",
                        [(i, "v%d" % i, psycopg.types.json.Jsonb({"i": i}), bytes([i % 256]) * 10)
                         for i in range(300)])
        conn.commit()
        cur.execute("SELECT v, j, b FROM relay_clients WHERE id = %(id)s", {"id": 257})
        v, j, b = cur.fetchone()
        assert (v, j, b) == ("v257", {"i": 257}, bytes([1]) * 10)
        # binary result format
        cur = conn.cursor(binary=True)
        cur.execute("SELECT id, b FROM relay_clients WHERE id < %s ORDER BY id", (5,))
        assert cur.fetchall() == [(i, bytes([i]) * 10) for i in range(5)]


def test_psycopg_prepared_statements(relay, table):
    # prepare_threshold=0: every query becomes a named server-side statement
    with psycopg.connect(relay.uri(), prepare_threshold=0, autocommit=True) as conn:
        for i in range(100):
            conn.execute("INSERT INTO relay_clients (id, v) VALUES (%s, %s)", (i, str(i)), prepare=True)
        for i in range(0, 100, 7):
            assert conn.execute("SELECT v FROM relay_clients WHERE id = %s", (i,), prepare=True
                                ).fetchone() == (str(i),)
        names = conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0]
        assert names >= 2
        # explicit PREPARE / EXECUTE / DEALLOCATE over the simple protocol
        conn.execute("PREPARE p1(int) AS SELECT v FROM relay_clients WHERE id = $1")
        assert conn.execute("EXECUTE p1(42)").fetchone() == ("42",)
        conn.execute("DEALLOCATE p1")
        with pytest.raises(psycopg.errors.InvalidSqlStatementName):
            conn.execute("EXECUTE p1(42)")
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_psycopg_transactions(relay, table):
    with psycopg.connect(relay.uri()) as conn:
        with conn.transaction():
            conn.execute("INSERT INTO relay_clients (id, v) VALUES (1, 'a')")
            with pytest.raises(psycopg.errors.UniqueViolation):
                with conn.transaction():  # savepoint
                    conn.execute("INSERT INTO relay_clients (id, v) VALUES (1, 'dup')")
            conn.execute("INSERT INTO relay_clients (id, v) VALUES (2, 'b')")
        try:
            with conn.transaction():
                conn.execute("INSERT INTO relay_clients (id, v) VALUES (3, 'c')")
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        assert conn.execute("SELECT array_agg(id ORDER BY id) FROM relay_clients").fetchone()[0] == [1, 2]
        conn.rollback()
        # isolation: another connection does not see uncommitted rows
        with psycopg.connect(relay.uri(), autocommit=True) as other:
            conn.execute("INSERT INTO relay_clients (id, v) VALUES (4, 'd')")
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
            assert other.execute("SELECT count(*) FROM relay_clients WHERE id = 4").fetchone()[0] == 0
            conn.commit()
            assert other.execute("SELECT count(*) FROM relay_clients WHERE id = 4").fetchone()[0] == 1


def test_psycopg_pipeline_and_server_cursor(relay, table):
    with psycopg.connect(relay.uri(), autocommit=True) as conn:
        with conn.pipeline():
            curs = [conn.execute("INSERT INTO relay_clients (id, v) VALUES (%s, %s) RETURNING id",
                                 (i, "p%d" % i)) for i in range(500)]
        assert [c.fetchone()[0] for c in curs] == list(range(500))
        with conn.transaction():
            with conn.cursor(name="relay_named") as cur:
                cur.itersize = 37
                cur.execute("SELECT id FROM relay_clients ORDER BY id")
                assert [r[0] for r in cur] == list(range(500))


def test_psycopg_identifiers_and_errors(relay):
    with psycopg.connect(relay.uri(), autocommit=True) as conn:
        q = sql.SQL("SELECT {} FROM (SELECT 1 AS {}) t").format(sql.Identifier("odd \"name\""),
                                                                sql.Identifier("odd \"name\""))
        assert conn.execute(q).fetchone() == (1,)
        with pytest.raises(psycopg.errors.SyntaxError) as e:
            conn.execute("SELEC 1")
        assert e.value.sqlstate == "42601"
        assert conn.execute("SELECT 'alive'").fetchone() == ("alive",)


@pytest.mark.parametrize("sslmode", ["disable", "no-verify"])
def test_node_postgres(relay, sslmode):
    if sslmode != "disable" and getattr(relay, "direct", False):
        sslmode = "disable"
    r = subprocess.run(["node", os.path.join(TOP, "tests", "node", "basic.js"), relay.uri(sslmode=sslmode)],
                       capture_output=True, text=True, timeout=120, cwd=os.path.join(TOP, "tests", "node"))
    assert r.returncode == 0, r.stdout + r.stderr + relay.log()[-2000:]
    assert "FAIL" not in r.stdout
    assert r.stdout.count("\nok ") + r.stdout.startswith("ok ") >= 13, r.stdout

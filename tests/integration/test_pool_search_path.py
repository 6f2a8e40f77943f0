"""A client's own search_path under transaction pooling: carried from server
to server like the parameters Postgres reports, never pinning, and never
undoing the version route of a migration in progress.

- clients that SET search_path (and one that does not) run transactions
  over a pool of 2 at the same time, so each lands on servers the others
  used: each sees its own schema every time, none is pinned (/status,
  /pools), RESET goes back to the default;
- a SET search_path inside a transaction block still pins (the pool cannot
  tell whether it outlives the transaction);
- during a migration the release's schema stays first (the dual-write
  triggers read the first schema on the path to know the writer's shape):
  a client's own path, set with SET or in its startup options or parameters,
  comes after it, in transaction pooling and in session mode.
"""
import socket
import threading

import psycopg
import pytest

from support import pg_login, pg_simple_query, start_migration, version_options, VSCHEMA, write_users_file

PW = "sppass"
USER = "poolsp"


@pytest.fixture
def schemas(cluster):
    cluster.psql("DROP ROLE IF EXISTS %s" % USER, check=False)
    cluster.psql("DROP SCHEMA IF EXISTS sp_a CASCADE; DROP SCHEMA IF EXISTS sp_b CASCADE")
    cluster.psql("CREATE ROLE %s LOGIN PASSWORD '%s'" % (USER, PW))
    for name in ("sp_a", "sp_b"):
        cluster.psql("CREATE SCHEMA %s; CREATE TABLE %s.t AS SELECT '%s'::text AS v; GRANT USAGE ON SCHEMA %s TO %s;"
                     " GRANT SELECT ON %s.t TO %s" % (name, name, name, name, USER, name, USER))
    yield
    cluster.psql("DROP SCHEMA IF EXISTS sp_a CASCADE; DROP SCHEMA IF EXISTS sp_b CASCADE")
    cluster.psql("DROP ROLE IF EXISTS %s" % USER, check=False)


def pooled(proxy_factory, tmp_path, users, *extra):
    path = write_users_file(str(tmp_path / "sp-users.json"), {u: {"password": pw} for u, pw in users.items()})
    return proxy_factory(extra_args=["--auth", "scram", "--users-file", path, "--pool-mode", "transaction",
                                     "--pool-size", "2"] + list(extra))


def connect(p, name, user=USER, password=PW, db="appdb", options=None):
    kw = {"options": options} if options else {}
    return psycopg.connect(p.uri(user=user, password=password, db=db, extra="application_name=" + name),
                           autocommit=True, prepare_threshold=None, **kw)


def run_transactions(conn, n, probe, out):
    """n transactions, each holding its server a moment so others must use
    the other one; records (backend pid, probe's answer) of each."""
    for _ in range(n):
        with conn.transaction():
            pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            conn.execute("SELECT pg_sleep(0.01)")
            out.append((pid, conn.execute(probe).fetchone()[0]))


def session_of(p, name):
    code, st = p.admin("GET", "/status")
    assert code == 200, st
    return [s for s in st["sessions"] if s.get("application_name") == name][0]


def test_a_clients_search_path_follows_it_across_servers(needs_proxy, cluster, proxy_factory, tmp_path, schemas):
    p = pooled(proxy_factory, tmp_path, {USER: PW})
    a, b, c = connect(p, "sp-a"), connect(p, "sp-b"), connect(p, "sp-default")
    default_path = c.execute("SHOW search_path").fetchone()[0]
    a.execute("SET search_path TO sp_a")
    b.execute("SET search_path = 'sp_b', public")  # a string is a name too
    seen = {"a": [], "b": [], "c": []}
    threads = [threading.Thread(target=run_transactions, args=(a, 15, "SELECT v FROM t", seen["a"])),
               threading.Thread(target=run_transactions, args=(b, 15, "SELECT v FROM t", seen["b"])),
               threading.Thread(target=run_transactions, args=(c, 15, "SHOW search_path", seen["c"]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [v for _, v in seen["a"]] == ["sp_a"] * 15, seen["a"]
    assert [v for _, v in seen["b"]] == ["sp_b"] * 15, seen["b"]
    assert [v for _, v in seen["c"]] == [default_path] * 15, seen["c"]
    # three clients, two servers: every client ran on both
    for k in ("a", "b", "c"):
        assert len({pid for pid, _ in seen[k]}) == 2, (k, seen[k])
    assert a.execute("SHOW search_path").fetchone()[0] == "sp_a"
    assert b.execute("SHOW search_path").fetchone()[0] == "sp_b, public"
    for name in ("sp-a", "sp-b", "sp-default"):
        assert session_of(p, name)["pinned"] is None
    assert p.admin("GET", "/pools")[1]["pinned_sessions"] == 0
    # RESET: back to the default, wherever the next transaction runs
    a.execute("RESET search_path")
    for _ in range(4):
        assert a.execute("SHOW search_path").fetchone()[0] == default_path
    for conn in (a, b, c):
        conn.close()
    assert "pinned" not in p.log()


def test_a_search_path_set_inside_a_transaction_pins(needs_proxy, cluster, proxy_factory, tmp_path, schemas):
    p = pooled(proxy_factory, tmp_path, {USER: PW})
    with connect(p, "sp-in-tx") as a:
        with a.transaction():
            a.execute("SET search_path TO sp_b")
        assert a.execute("SELECT v FROM t").fetchone()[0] == "sp_b"
        assert "SET search_path" in (session_of(p, "sp-in-tx")["pinned"] or "")


# ---- with a migration in progress: the route's schema first -------------------

OWN = "sp_own"


def own_schema(cluster, db):
    cluster.psql("CREATE SCHEMA %s; CREATE TABLE %s.extras AS SELECT 42 AS n" % (OWN, OWN), uri=cluster.uri(db=db))


def first_and_rest(path):
    names = [n.strip().strip('"') for n in path.split(",")]
    return names[0], names[1:]


def route_checks(conn, vschema, new_shape):
    """In one transaction: the route's schema first, the client's own after
    it; returns the backend's pid."""
    path = conn.execute("SHOW search_path").fetchone()[0]
    first, rest = first_and_rest(path)
    assert first == vschema, path
    assert rest[:1] == [OWN], path
    cols = [d.name for d in conn.execute("SELECT * FROM checks LIMIT 1").description]
    assert ("claim" in cols) == new_shape and ("claim_text" in cols) == (not new_shape), cols
    assert conn.execute("SELECT n FROM extras").fetchone()[0] == 42  # its own schema, after the route's
    conn.execute("SELECT pg_sleep(0.01)")
    return conn.execute("SELECT pg_backend_pid()").fetchone()[0]


def route_transactions(conn, n, vschema, new_shape, own, out):
    for _ in range(n):
        with conn.transaction():
            if own:
                out.append(route_checks(conn, vschema, new_shape))
            else:
                path = conn.execute("SHOW search_path").fetchone()[0]
                assert first_and_rest(path) == (vschema, ["public"]), path
                conn.execute("SELECT pg_sleep(0.01)")
                out.append(conn.execute("SELECT pg_backend_pid()").fetchone()[0])


def test_the_version_route_stays_first_in_transaction_pooling(needs_proxy, cluster, proxy_factory, tmp_path,
                                                              legacy_db):
    own_schema(cluster, legacy_db)
    p = pooled(proxy_factory, tmp_path, {"postgres": "postgres"}, "--engine-db", cluster.uri(db=legacy_db))
    start_migration(p)
    news = [connect(p, "sp-new%d" % i, "postgres", "postgres", legacy_db, options=version_options())
            for i in range(3)]
    old = connect(p, "sp-old", "postgres", "postgres", legacy_db)
    # the own path in the startup options (a pool of its own)
    new_opts = connect(p, "sp-new-opts", "postgres", "postgres", legacy_db,
                       options=version_options() + " -c search_path=%s,public" % OWN)
    for conn in news[:2] + [old]:
        conn.execute("SET search_path TO %s, public" % OWN)
    pids = [[] for _ in news]
    errors = []

    def run(i):
        try:
            route_transactions(news[i], 12, VSCHEMA, True, i < 2, pids[i])
        except Exception as e:  # reported below
            errors.append(repr(e))
    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    # three clients on the new release's pool of two: each ran on both servers
    assert all(len(set(x)) == 2 for x in pids), pids
    for _ in range(3):
        with old.transaction():
            route_checks(old, VSCHEMA + "_old", False)
        with new_opts.transaction():
            route_checks(new_opts, VSCHEMA, True)
    for name in ["sp-new%d" % i for i in range(3)] + ["sp-old", "sp-new-opts"]:
        assert session_of(p, name)["pinned"] is None, name
    for conn in news + [old, new_opts]:
        conn.close()


def test_the_version_route_stays_first_in_session_mode(needs_proxy, cluster, proxy_factory, legacy_db):
    own_schema(cluster, legacy_db)
    p = proxy_factory(extra_args=["--engine-db", cluster.uri(db=legacy_db)])
    start_migration(p)
    with connect(p, "sm-opts", "postgres", "postgres", legacy_db,
                 options=version_options() + " -c search_path=%s,public" % OWN) as conn:
        with conn.transaction():
            route_checks(conn, VSCHEMA, True)
    # a search_path startup parameter (pgjdbc's currentSchema) is applied
    # after the options by Postgres: it must not undo the route
    s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    try:
        last = pg_login(s, "postgres", legacy_db, "postgres", options=version_options(),
                        search_path=OWN + ",public")[-1]
        assert last[0] == b"Z", last
        rows, err = pg_simple_query(s, "SHOW search_path")
        assert err is None and first_and_rest(rows[0][0]) == (VSCHEMA, [OWN, "public"]), rows
    finally:
        s.close()

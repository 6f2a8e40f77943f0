"""The seeds' migration through pool_mode "transaction" (issue 23): a
thousand clients over a pool of 20 server connections, the old release writing during
expand and backfill, the new release (pgtandem.version, pgbench -M prepared)
writing across `complete`; 0 client errors, every transaction in the ledger,
the ledger and `checks` compared row by row, and never more server
connections than the pool allows. And the prepared `SELECT *` of the new
release's clients across `complete`: psycopg, node-postgres, pgjdbc and
asyncpg, each on one connection moving between server connections."""
import os
import subprocess

import psycopg
import pytest

from support import (complete_migration, LEGACY_DIFF_SQL, LEGACY_ROWS, NAME, NEW_SCRIPT, OLD_SCRIPT, PeakSampler,
                     pgbench, pgbench_result, raise_nofile, relay_direct, scalar, start_migration,
                     throttled_migration, TOP, version_options, versions, wait_for, wait_new_release_writes,
                     write_users_file)

POOL = 20
OLD_CLIENTS = 1000  # the figure: a thousand clients on a pool of 20
NEW_CLIENTS = 60  # -M prepared prepares with a blocking call: one thread each
# transactions per client: enough that both runs are still writing when the
# migration starts (old) and completes (new), counted so that slow logins
# cannot leave a run with none
OLD_TX = 16
NEW_TX = 150


def _server_connections(cluster, dbname):
    return int(cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE datname = '%s' AND usename = 'postgres'"
                            " AND application_name NOT LIKE 'pgtandem%%' AND pid <> pg_backend_pid()" % dbname))


def test_seed_migration_through_transaction_pooling(cluster, proxy_factory, legacy_db, tmp_path):
    if relay_direct():
        pytest.skip("transaction pooling is the proxy's")
    raise_nofile(4096)  # pgbench's thousand sockets are this process's children's
    users = write_users_file(str(tmp_path / "users.json"), {"postgres": {"password": "postgres"}})
    proxy = proxy_factory(extra_args=["--engine-db", cluster.uri(db=legacy_db), "--auth", "scram", "--users-file",
                                      users, "--pool-mode", "transaction", "--pool-size", str(POOL),
                                      # pools are per version route: the database's cap bounds them all
                                      "--max-db-connections", str(POOL)])
    mig = throttled_migration(4000)
    try:
        with PeakSampler(lambda: _server_connections(cluster, legacy_db), 0.1) as servers:
            old, old_path = pgbench(proxy, legacy_db, OLD_SCRIPT, None, "simple", clients=OLD_CLIENTS,
                                        jobs=4, transactions=OLD_TX)
            # a thousand SCRAM logins (each one's key derivation in pgbench)
            wait_for(lambda: versions(proxy).get("old", 0) >= OLD_CLIENTS, 180, "old-release sessions", proc=old)
            start_migration(proxy, mig)
            old_res = pgbench_result(old, old_path, timeout=600)
            assert old_res["rc"] == 0 and not old_res["aborted"], old_res["out"] + proxy.log()[-3000:]
            assert old_res["failed"] in (None, 0) and old_res["processed"] > 0, old_res["out"]

            wait_for(lambda: versions(proxy).get("old", 0) == 0, 30.0, "old-release sessions to leave")
            new, new_path = pgbench(proxy, legacy_db, NEW_SCRIPT, None, "prepared", version_options(),
                                        clients=NEW_CLIENTS, jobs=NEW_CLIENTS, transactions=NEW_TX)
            wait_for(lambda: versions(proxy).get(NAME, 0) >= NEW_CLIENTS, 30.0, "new-release sessions", proc=new)
            wait_new_release_writes(cluster, legacy_db, 100, proc=new)
            rep = complete_migration(proxy)
            new_res = pgbench_result(new, new_path, timeout=600)
    finally:
        os.unlink(mig)
    print("old: %s tx, new: %s tx, peak servers %d, cutover: %s" % (old_res["processed"], new_res["processed"],
                                                                     servers.peak, rep))
    assert new_res["rc"] == 0 and not new_res["aborted"], new_res["out"] + proxy.log()[-3000:]
    assert new_res["failed"] in (None, 0) and new_res["processed"] > 0, new_res["out"]
    # one over at most: a server closed to make room for another route's is
    # counted out by the proxy at once, by Postgres once its backend exited
    assert 0 < servers.peak <= POOL + 1, "server connections peaked at %d" % servers.peak
    q = lambda sql: scalar(cluster, legacy_db, sql)
    assert int(q("SELECT count(*) FROM cut_ledger")) == old_res["processed"] + new_res["processed"]
    missing = q("SELECT count(*) FROM cut_ledger l LEFT JOIN checks c ON c.id = l.check_id WHERE c.id IS NULL")
    mismatched = q("SELECT count(*) FROM cut_ledger l JOIN checks c ON c.id = l.check_id WHERE c.claim IS DISTINCT"
                   " FROM l.claim OR c.config_json IS DISTINCT FROM l.config OR c.counts_by_template_json IS"
                   " DISTINCT FROM l.counts")
    updates_bad = q("SELECT count(*) FROM cut_updates u LEFT JOIN checks c ON c.id = u.check_id"
                    " WHERE c.config_json IS DISTINCT FROM u.config")
    legacy_bad = q(LEGACY_DIFF_SQL % {"rows": LEGACY_ROWS})
    assert (missing, mismatched, updates_bad, legacy_bad) == ("0", "0", "0", "0")
    code, pools = proxy.admin("GET", "/pools")
    assert pools["pinned_sessions"] == 0, pools
    assert sum(p["prepared_hits_total"] for p in pools["pools"]) > 0, pools


JDBC_JAR = "/usr/share/java/postgresql.jar"  # Debian's libpostgresql-jdbc-java

# asyncpg's statement cache: the statement prepared once, its description
# kept and used to decode every row after; the "ready"/"after" protocol of
# tests/node/cutover.js
ASYNCPG_STAR = r"""
import asyncio, sys
import asyncpg

async def main(uri, options, id_):
    c = await asyncpg.connect(uri, server_settings={"options": options})
    async def run():
        for _ in range(5):
            r = await c.fetchrow("SELECT * FROM checks WHERE id = $1", id_)
            if r is None:
                raise RuntimeError("no row %d" % id_)
            list(r.values())
        return ",".join(r.keys())
    print("ready " + await run(), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    print("after " + await run(), flush=True)
    await c.close()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def _psycopg_star(conn):
    for _ in range(5):
        cur = conn.execute("SELECT * FROM checks WHERE id = %s", (7,))
        assert cur.fetchone() is not None
    return ",".join(d.name for d in cur.description)


def test_prepared_select_star_of_the_new_release_across_complete(cluster, proxy_factory, legacy_db, tmp_path):
    """Each client of the new release prepares `SELECT * FROM checks WHERE id
    = 7` during the migration and runs it again after `complete` on the same
    connection: the same columns both times (the new shape, which clients
    that keep a statement's description decode with), no error, and the
    servers' statements prepared again after the contract."""
    if relay_direct():
        pytest.skip("transaction pooling is the proxy's")
    users = write_users_file(str(tmp_path / "users.json"), {"postgres": {"password": "postgres"}})
    proxy = proxy_factory(extra_args=["--engine-db", cluster.uri(db=legacy_db), "--auth", "scram", "--users-file",
                                      users, "--pool-mode", "transaction", "--pool-size", "3"])
    start_migration(proxy)
    options = version_options()
    encoded = options.replace(" ", "%20").replace("=", "%3D")
    uri = proxy.uri(user="postgres", password="postgres", db=legacy_db)
    node_dir = os.path.join(TOP, "tests", "node")
    clients = {
        "node-postgres": (["node", os.path.join(node_dir, "cutover.js"), uri + "&options=" + encoded, "7"], node_dir),
        "pgjdbc": (["java", "-cp", JDBC_JAR, os.path.join(TOP, "tests", "clients", "PreparedStar.java"),
                    "jdbc:postgresql://127.0.0.1:%d/%s?sslmode=disable&options=%s" % (proxy.port, legacy_db, encoded),
                    "postgres", "postgres", "7"], None),
        "asyncpg": (["/usr/bin/python3", "-c", ASYNCPG_STAR, uri, options, "7"], None),
    }
    procs = {}
    try:
        for name, (argv, cwd) in clients.items():
            procs[name] = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True)
        with psycopg.connect(uri, prepare_threshold=0, autocommit=True, options=options) as conn:
            ready = {"psycopg": _psycopg_star(conn)}
            for name, p in procs.items():
                line = p.stdout.readline().split()
                assert line and line[0] == "ready", (name, line, p.stderr.read() if p.poll() is not None else "")
                ready[name] = line[1]
            complete_migration(proxy)
            after = {"psycopg": _psycopg_star(conn)}
        for name, p in procs.items():
            out, err = p.communicate("go\n", timeout=120)
            assert p.returncode == 0, (name, err, proxy.log()[-3000:])
            line = out.split("\n")[0].split()
            assert line and line[0] == "after", (name, out)
            after[name] = line[1]
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    final = scalar(cluster, legacy_db, "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute"
                                           " WHERE attrelid = 'checks'::regclass AND attnum > 0 AND NOT attisdropped")
    assert "claim" in final.split(",") and "claim_text" not in final.split(",")
    assert ready == after == {name: final for name in ready}, (ready, after, final)
    code, pools = proxy.admin("GET", "/pools")
    assert code == 200 and pools["pinned_sessions"] == 0, pools

"""A release declared where an app-side pooler lets it through: a PgBouncer
in transaction mode in front of pgtandem (a sidecar per app pod) passes the
database name on and drops or refuses the `options` startup parameter, so
the new release names itself by its database: `appdb@<migration>` (one
[databases] alias of that PgBouncer per release).

The seeds' migration with both releases writing through a real PgBouncer
1.18 in transaction mode: the old release through alias `<db>`, the new one
through alias `<db>_next` (dbname=<db>@<migration>); 0 failed transactions
in either, `complete` without force once the old release's alias is closed
(`KILL` on PgBouncer's console, as an operator retires it), and the ledger
compared with `checks` row by row."""
import os
import shutil
import subprocess
import tempfile

import psycopg
import pytest

from support import (complete_migration, free_port, LEGACY_DIFF_SQL, LEGACY_ROWS, NAME, NEW_SCRIPT, OLD_SCRIPT,
                     pgbench_result, relay_direct, scalar, start_migration, throttled_migration, versions,
                     wait_for, wait_new_release_writes, wait_port)

RUN = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []


@pytest.fixture
def sidecar():
    """Starts a PgBouncer in transaction mode in front of a proxy (as the
    Postgres user: PgBouncer refuses root); stopped at the end."""
    started = []

    def make(proxy, aliases):
        # not under pytest's 0700 base: PgBouncer runs as the Postgres user
        d = tempfile.mkdtemp(prefix="pgtandem-pgbouncer-")
        os.chmod(d, 0o755)
        port = free_port()
        with open(d + "/userlist.txt", "w") as f:
            f.write('"postgres" "postgres"\n')
        dbs = "".join("%s = host=127.0.0.1 port=%d dbname=%s\n" % (a, proxy.port, db) for a, db in aliases.items())
        with open(d + "/pgbouncer.ini", "w") as f:
            f.write("[databases]\n%s\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = %d\n"
                    "unix_socket_dir =\nauth_type = scram-sha-256\nauth_file = %s/userlist.txt\n"
                    "pool_mode = transaction\ndefault_pool_size = 8\nmax_client_conn = 200\n"
                    "server_tls_sslmode = disable\nadmin_users = postgres\nlogfile = %s/pgbouncer.log\n"
                    "pidfile = %s/pgbouncer.pid\nignore_startup_parameters = extra_float_digits\n"
                    % (dbs, port, d, d, d))
        if RUN:
            subprocess.run(["chown", "-R", "postgres", d], check=True)
        r = subprocess.run(RUN + ["pgbouncer", "-d", d + "/pgbouncer.ini"], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        started.append(d)
        wait_port(port)
        return port

    yield make
    for d in started:
        try:
            with open(d + "/pgbouncer.pid") as f:
                pid = int(f.read())
            os.kill(pid, 15)
        except (OSError, ValueError):
            pass
        shutil.rmtree(d, ignore_errors=True)


def console(port, sql):
    with psycopg.connect(host="127.0.0.1", port=port, user="postgres", password="postgres", dbname="pgbouncer",
                         autocommit=True, sslmode="disable") as c:
        c.execute(sql)


def pgbench_via(port, dbname, script, clients, transactions):
    fd, path = tempfile.mkstemp(prefix="alias-", suffix=".sql")
    with os.fdopen(fd, "w") as f:
        f.write(script % {"rows": LEGACY_ROWS})
    args = ["pgbench", "-n", "-c", str(clients), "-j", "2", "-t", str(transactions), "-M", "simple", "-f", path,
            "postgresql://postgres:postgres@127.0.0.1:%d/%s?sslmode=disable" % (port, dbname)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), path


def test_both_releases_through_a_pgbouncer_in_transaction_mode(cluster, proxy_factory, legacy_db, sidecar):
    if relay_direct():
        pytest.skip("the release route is the proxy's")
    proxy = proxy_factory(extra_args=["--engine-db", cluster.uri(db=legacy_db)])
    next_alias = legacy_db + "_next"
    port = sidecar(proxy, {legacy_db: legacy_db, next_alias: "%s@%s" % (legacy_db, NAME)})
    mig = throttled_migration(4000)
    try:
        old, old_path = pgbench_via(port, legacy_db, OLD_SCRIPT, clients=8, transactions=150)
        wait_for(lambda: versions(proxy).get("old", 0) >= 1, 30.0, "old-release sessions", proc=old)
        start_migration(proxy, mig)
        old_res = pgbench_result(old, old_path, timeout=600)
        assert old_res["rc"] == 0 and old_res["failed"] in (None, 0), old_res["out"] + proxy.log()[-3000:]

        # the new release, named only by its database: its writes reach the
        # new shape through the version schema
        new, new_path = pgbench_via(port, next_alias, NEW_SCRIPT, clients=8, transactions=400)
        wait_for(lambda: versions(proxy).get(NAME, 0) >= 1, 30.0, "new-release sessions", proc=new)
        # the old release is retired: its alias's server connections closed
        console(port, "KILL %s" % legacy_db)
        wait_for(lambda: versions(proxy).get("old", 0) == 0, 30.0, "old-release sessions to leave")
        wait_new_release_writes(cluster, legacy_db, 100, proc=new)
        rep = complete_migration(proxy)  # no force: nobody of the old release is left
        new_res = pgbench_result(new, new_path, timeout=600)
    finally:
        os.unlink(mig)
    print("old: %s tx, new: %s tx, cutover: %s" % (old_res["processed"], new_res["processed"], rep))
    assert new_res["rc"] == 0 and new_res["failed"] in (None, 0) and new_res["processed"] == 8 * 400, \
        new_res["out"] + proxy.log()[-3000:]
    assert old_res["processed"] == 8 * 150, old_res["out"]
    q = lambda sql: scalar(cluster, legacy_db, sql)
    assert int(q("SELECT count(*) FROM cut_ledger")) == old_res["processed"] + new_res["processed"]
    assert int(q("SELECT count(*) FROM cut_ledger WHERE release = 'new'")) == new_res["processed"]
    missing = q("SELECT count(*) FROM cut_ledger l LEFT JOIN checks c ON c.id = l.check_id WHERE c.id IS NULL")
    mismatched = q("SELECT count(*) FROM cut_ledger l JOIN checks c ON c.id = l.check_id WHERE c.claim IS DISTINCT"
                   " FROM l.claim OR c.config_json IS DISTINCT FROM l.config OR c.counts_by_template_json IS"
                   " DISTINCT FROM l.counts")
    updates_bad = q("SELECT count(*) FROM cut_updates u LEFT JOIN checks c ON c.id = u.check_id"
                    " WHERE c.config_json IS DISTINCT FROM u.config")
    legacy_bad = q(LEGACY_DIFF_SQL % {"rows": LEGACY_ROWS})
    assert (missing, mismatched, updates_bad, legacy_bad) == ("0", "0", "0", "0")


def test_the_database_suffix_routes_and_reaches_the_plain_database(cluster, proxy_factory, legacy_db):
    """Directly, without a pooler: `<db>@<migration>` reads the new shape,
    `<db>` the old one; Postgres sees the database without the suffix."""
    if relay_direct():
        pytest.skip("the release route is the proxy's")
    proxy = proxy_factory(extra_args=["--engine-db", cluster.uri(db=legacy_db)])
    start_migration(proxy)
    new_uri = proxy.uri(user="postgres", password="postgres", db="%s@%s" % (legacy_db, NAME))
    with psycopg.connect(new_uri, autocommit=True) as c:
        assert c.execute("SELECT current_database()").fetchone()[0] == legacy_db
        cols = [d.name for d in c.execute("SELECT * FROM checks LIMIT 0").description]
        assert "claim" in cols and "claim_text" not in cols, cols
    with psycopg.connect(proxy.uri(user="postgres", password="postgres", db=legacy_db), autocommit=True) as c:
        cols = [d.name for d in c.execute("SELECT * FROM checks LIMIT 0").description]
        assert "claim_text" in cols and "claim" not in cols, cols
    complete_migration(proxy)

"""What a fleet costs the database in connection slots: a member with no
migration step to run (none in progress, or following one another proxy
runs) keeps only its fleet connection; its engine connection closes once
idle and opens again when a step, a status read or the fleet's news needs
it. A sidecar fleet of N proxies so holds N backends of its own, plus the
starting proxy's engine connection and its reserved slot while its
migration is in progress (on a 104-slot endpoint a fleet of 52 used to
take every slot before a client connected)."""
import psycopg

from support import (admin_url, assert_new_shape, complete_via, db_uri, make_fleet, run_pgtandem,
                     start_migration, status, version_options, wait_for, wait_phase)

N = 4


def own_backends(cluster, dbname):
    """{application_name: count} of the fleet's own backends on dbname."""
    with psycopg.connect(cluster.super_uri, autocommit=True) as c:
        return dict(c.execute("SELECT application_name, count(*) FROM pg_stat_activity WHERE datname = %s"
                              " AND application_name LIKE 'pgtandem%%' GROUP BY 1", (dbname,)).fetchall())


def test_idle_members_hold_one_backend_each_and_still_follow(cluster, proxy_factory, legacy_db):
    proxies = make_fleet(proxy_factory, cluster, legacy_db, N)
    # no migration: the fleet's connection each, nothing more
    wait_for(lambda: sum(own_backends(cluster, legacy_db).values()) <= N, 30,
             "idle members to keep one backend each", detail=lambda: str(own_backends(cluster, legacy_db)))
    st = status(proxies[1])["engine"]
    assert st["connected"] is False and st["closed_while_idle"] is True, st
    start_migration(proxies[0])
    for p in proxies:
        wait_phase(p, "active")
    # the starting proxy keeps its engine connection and a reserved slot;
    # the followers go back to one each
    wait_for(lambda: sum(own_backends(cluster, legacy_db).values()) <= N + 2, 30,
             "followers to keep one backend each", detail=lambda: str(own_backends(cluster, legacy_db)))
    assert own_backends(cluster, legacy_db).get("pgtandem fleet") == N
    # a status read through a follower opens it again for the answer
    r = run_pgtandem(["migrate", "status", "--json", "--proxy", admin_url(proxies[2])])
    assert r.returncode == 0 and '"active"' in r.stdout, r.stdout + r.stderr
    conns = [psycopg.connect(db_uri(p, legacy_db), prepare_threshold=0, autocommit=True, options=version_options())
             for p in proxies]
    try:
        # the cutover through a follower whose engine connection was closed
        r, rep = complete_via(proxies[3])
        assert r.returncode == 0 and rep.get("status") == "completed", r.stdout + r.stderr + proxies[3].log()[-3000:]
        for c in conns:
            assert_new_shape(c)
    finally:
        for c in conns:
            c.close()
    for p in proxies:
        wait_phase(p, "completed")
    wait_for(lambda: sum(own_backends(cluster, legacy_db).values()) <= N, 30,
             "every member back to one backend", detail=lambda: str(own_backends(cluster, legacy_db)))

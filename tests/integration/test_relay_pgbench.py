"""pgbench through the relay: -i (which uses COPY), then 16 clients for 5 s
in each query mode with zero failed transactions."""
import re
import subprocess

import pytest

DB = "relay_pgbench"


def _parse(out):
    res = {}
    m = re.search(r"number of transactions actually processed: (\d+)", out)
    res["processed"] = int(m.group(1)) if m else None
    m = re.search(r"number of failed transactions: (\d+)", out)
    res["failed"] = int(m.group(1)) if m else None
    m = re.search(r"tps = ([\d.]+)", out)
    res["tps"] = float(m.group(1)) if m else None
    return res


@pytest.fixture(scope="module")
def bench_db(cluster):
    cluster.psql("DROP DATABASE IF EXISTS %s" % DB, uri=cluster.super_uri)
    cluster.psql("CREATE DATABASE %s OWNER app" % DB, uri=cluster.super_uri)
    yield DB
    cluster.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % DB, uri=cluster.super_uri)


@pytest.fixture(scope="module")
def initialised(bench_db, cluster):
    return {"done": False}


def test_pgbench_init(relay, bench_db, initialised, cluster):
    r = subprocess.run(["pgbench", "-i", "-s", "1", "-q", relay.uri(db=bench_db)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr + relay.log()[-2000:]
    assert "done" in r.stderr
    direct = cluster.psql("SELECT count(*) FROM pgbench_accounts",
                          uri=cluster.uri("app", "apppass", bench_db))
    assert direct == "100000"
    initialised["done"] = True


@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_pgbench_16_clients(relay, bench_db, initialised, mode):
    if not initialised["done"]:
        pytest.skip("pgbench -i did not run")
    r = subprocess.run(["pgbench", "-n", "-c", "16", "-j", "2", "-T", "5", "-M", mode,
                        relay.uri(db=bench_db)], capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out + relay.log()[-2000:]
    res = _parse(out)
    assert res["processed"] is not None and res["processed"] > 0, out
    assert res["failed"] == 0, out
    assert "query mode: %s" % mode in out
    assert res["tps"] > 0, out
    print("pgbench -M %s: %s" % (mode, res))

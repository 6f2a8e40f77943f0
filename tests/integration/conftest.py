"""The integration suite's pytest fixtures and hooks; the helpers they and
the tests use live in support/ (see support/__init__.py).

`tests/run.sh` starts one throwaway cluster (TLS + SCRAM) and exports PGT_ENV;
when it is not set (running pytest by hand) a cluster is started here.
PGTANDEM_BIN selects the binary under test (plain or sanitizer build).
"""
import os
import subprocess
import uuid

import pytest

from support import (LIBPQ_CLIENT, PGCLUSTER, POOLED_USERS, TOP, Cluster, DirectTarget, Env, Proxy,
                     Upstream, load_checks_db, make_cert, make_test_ca, read_env, relay_direct,
                     start_cluster, throwaway_cluster, write_users_file)
from neonfront import NeonFront


def pytest_configure(config):
    config.addinivalue_line("markers", "serial: runs after the parallel suite, one test at a time, on the"
                            " runner's shared cluster (tests/run.sh)")
    config.addinivalue_line("markers", "image: the container image (podman); tests/run.sh runs these once,"
                            " after the two suites")
    config.addinivalue_line("markers", "regress: PostgreSQL's regression suite through the pool; tests/run.sh runs"
                            " it once, against bin/pgtandem, after the two suites")


@pytest.fixture(scope="session")
def cluster():
    """The suite's Postgres. Run serially under tests/run.sh: the runner's
    cluster (PGT_ENV). Under pytest-xdist (-n): one cluster per worker,
    started here (in PGT_WORKDIR when set, so that the runner can stop what a
    crashed worker left behind), so that the tests of different workers share
    no database, role, setting or pg_stat_activity and each worker sees the
    suite exactly as a serial run does."""
    path = os.environ.get("PGT_ENV")
    if path and not os.environ.get("PYTEST_XDIST_WORKER"):
        yield Cluster(read_env(path))
        return
    d = start_cluster(os.environ.get("PGT_WORKDIR") or None)
    try:
        yield Cluster(read_env(d + "/pg/env"))
    finally:
        subprocess.run(["sh", PGCLUSTER, "stop", d + "/pg"],
                       capture_output=True, timeout=120)


@pytest.fixture
def proxy_factory(cluster):
    started = []

    def make(**kw):
        p = Proxy(cluster, **kw)
        started.append(p)
        return p

    yield make
    for p in started:
        p.stop()


@pytest.fixture
def proxy(proxy_factory):
    return proxy_factory()


@pytest.fixture(scope="module")
def built():
    """Builds LIBPQ_CLIENT (make clients) when it is not there; a module that
    runs it says pytestmark = pytest.mark.usefixtures("built")."""
    if not os.access(LIBPQ_CLIENT, os.X_OK):
        r = subprocess.run(["make", "-C", TOP, "clients"], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture
def db(cluster):
    """A fresh empty database (its URI, as postgres), dropped afterwards."""
    name = "mig_" + uuid.uuid4().hex[:10]
    cluster.psql("CREATE DATABASE %s" % name)
    yield cluster.uri(db=name)
    cluster.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name, check=False)


@pytest.fixture
def legacy_db(cluster):
    """A fresh database (its name) with the seeds' checks rows and the
    ledger tables (support.checks), dropped afterwards."""
    name = "cut_" + uuid.uuid4().hex[:10]
    load_checks_db(cluster, name)
    yield name
    cluster.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name, check=False)


@pytest.fixture
def env(cluster):
    """support.Env on the suite's cluster: the items database and its proxies."""
    e = Env(cluster)
    yield e
    e.close()


@pytest.fixture(scope="module")
def own_cluster():
    """A cluster of the module's own, which its tests may restart or stop."""
    with throwaway_cluster("pgtandem-faults-") as c:
        yield c


@pytest.fixture
def own_env(own_cluster):
    """support.Env on own_cluster (started again if a test stopped it)."""
    own_cluster.start()
    e = Env(own_cluster)
    yield e
    e.close()


@pytest.fixture
def relay(cluster, proxy_factory, relay_mode, tmp_path):
    """The proxy under test (default options), or the cluster itself when
    PGT_RELAY_DIRECT=1; in the suites of POOLED_SUITES also a proxy in
    transaction pooling mode (relay_mode "transaction")."""
    if relay_direct():
        return DirectTarget(cluster)
    if relay_mode == "transaction":
        users = write_users_file(str(tmp_path / "pooled-users.json"), {
            u: {"password": pw} for u, pw in POOLED_USERS.items()})
        p = proxy_factory(extra_args=["--auth", "scram", "--users-file", users, "--pool-mode", "transaction",
                                      "--pool-size", "4"])
        p.pooled = True
        return p
    return proxy_factory()


# The client suites run through transaction pooling too (issue 23): each of
# their tests that uses `relay` runs once per mode.
POOLED_SUITES = {"test_relay_clients", "test_relay_basic", "test_relay_copy", "test_relay_libpq"}


@pytest.fixture
def relay_mode():
    return "session"


def pytest_generate_tests(metafunc):
    if "relay" in metafunc.fixturenames and metafunc.module.__name__ in POOLED_SUITES and not relay_direct():
        metafunc.parametrize("relay_mode", ["session", "transaction"])


@pytest.fixture
def needs_proxy():
    if relay_direct():
        pytest.skip("needs the proxy (PGT_RELAY_DIRECT=1)")


# A Neon-like upstream (neonfront.py): random 32-bit backend keys,
# SNI or options endpoint= required, suspend with 57P01, a connection cap.
# `upstream` runs a test against plain Postgres and against the front.

@pytest.fixture(scope="session")
def neon_pki(tmp_path_factory):
    """The front's CA and a certificate for localhost, 127.0.0.1 and *.neon.test."""
    d = str(tmp_path_factory.mktemp("neon-pki"))
    ca = make_test_ca(d, cn="pgtandem neon front CA")
    cert = make_cert(d, "front", ca, ["DNS:localhost", "DNS:*.neon.test", "IP:127.0.0.1"])
    return {"ca": ca[0], "cert": cert}


@pytest.fixture
def neon_front(cluster, neon_pki):
    """neon_front(high_pids=False, backend_tls=False, max_connections=None)
    -> a running NeonFront relaying to the cluster; stopped at teardown."""
    started = []

    def make(**kw):
        kw.setdefault("super_uri", cluster.super_uri)
        f = NeonFront(neon_pki["cert"][0], neon_pki["cert"][1], cluster.port, **kw)
        started.append(f)
        return f

    yield make
    for f in started:
        assert f.stop(), "neon front thread still running"
        assert not f.errors, "neon front errors: %r" % f.errors


@pytest.fixture(params=["postgres", "neon"])
def upstream(request, cluster, neon_front):
    """Runs a test against plain Postgres and against a NeonFront (random
    keys, about half of them >= 2^31). Override the params with
    @pytest.mark.parametrize("upstream", [...], indirect=True), e.g. to mark
    the "neon" variant."""
    if request.param == "postgres":
        return Upstream("postgres", cluster)
    return Upstream("neon", cluster, neon_front())


@pytest.fixture
def upstream_relay(upstream, cluster, proxy_factory):
    """Like `relay`, with the proxy's --upstream from `upstream`. With
    PGT_RELAY_DIRECT=1 the postgres variant is the cluster itself and the
    neon variant is skipped (the front wants TLS and SNI)."""
    if relay_direct():
        if upstream.front is not None:
            pytest.skip("direct runs go to the cluster itself")
        return DirectTarget(cluster)
    return proxy_factory(upstream=upstream.uri)

"""PostgreSQL's own regression suite through transaction pooling: the
parallel schedule of the installed server's source (pg_regress, regress.so
and contrib/spi's libraries from tests/regress/prepare.sh) run straight
against a cluster, then through `pgtandem proxy --pool-mode transaction`
on the same cluster, its 217 result files compared byte for byte. A test
may differ only when tests/regress/expected_differences.txt lists it with
its reason (state of one backend no pooler can carry: currval, pg_stat
counters not yet flushed, a C library's static variables); any other
difference fails, with its diff.

The pool runs with server_reset_query_always: gin's and brin's PL/pgSQL
bodies SET planner settings the pool cannot see (a SET inside a function
is no statement of the client's), and by default, as with PgBouncer, they
stay on the server for the next client: another test of their parallel
group (spgist, one run in three) then EXPLAINs with enable_bitmapscan
off. With it, a server that changes hands starts from its login's
settings; without it the difference is the documented limit
(test_pool_session_state.py shows both).

Both runs use pg_regress's own database, `regression` (dropped and created
by pg_regress, through the pool for the pooled run): results print the
database's name, so a database per run would differ everywhere. The direct
run must pass pg_regress's own comparison for the comparison to mean
anything (a direct run that cannot connect would equal a pooled one).

Marked `regress`: tests/run.sh runs it once, against bin/pgtandem, after
both suites (about four minutes); by hand:
`PGTANDEM_BIN=$PWD/bin/pgtandem /usr/bin/python3 -m pytest -q -p no:cacheprovider -m regress tests/integration/test_pg_regress.py`.
"""
import difflib
import os
import re
import shutil
import signal
import subprocess
import tempfile

import pytest

from support import LIBPQ_ENV, TOP, Proxy, throwaway_cluster, write_users_file

pytestmark = pytest.mark.regress

ALLOWED = os.path.join(TOP, "tests", "regress", "expected_differences.txt")
# a run of the schedule takes 1-2 minutes on 2 cores; a hang through the
# pool must fail, not stall make test
RUN_TIMEOUT = 1200
POOL_SIZE = 10


def regress_env():
    """tests/regress/prepare.sh's PGT_REGRESS_* (fetching and building on
    the first run)."""
    r = subprocess.run(["sh", os.path.join(TOP, "tests", "regress", "prepare.sh")],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, "tests/regress/prepare.sh failed:\n" + r.stdout + r.stderr
    return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)


def schedule_tests(path):
    names = []
    with open(path) as f:
        for line in f:
            if line.startswith("test:"):
                names += line.split()[1:]
    return names


def allowed_differences():
    allowed = {}
    with open(ALLOWED) as f:
        for line in f:
            if not line.strip() or line.startswith("#"):
                continue
            name, _, reason = line.strip().partition(" ")
            assert reason.strip(), "%s: %s has no reason" % (ALLOWED, name)
            allowed[name] = reason.strip()
    return allowed


def run_schedule(rg, port, outdir):
    """pg_regress --schedule parallel_schedule against 127.0.0.1:port as
    postgres, its results in outdir/results (written by the server too:
    COPY TO a file, so open to its user). Returns pg_regress's exit status
    and its summary."""
    os.makedirs(os.path.join(outdir, "results"))
    for d in (outdir, os.path.join(outdir, "results")):
        os.chmod(d, 0o777)
    env = {k: v for k, v in os.environ.items() if k not in LIBPQ_ENV and not k.startswith("PGT_REGRESS")}
    env["PGPASSWORD"] = "postgres"
    args = [rg["PGT_REGRESS_BIN"], "--bindir=" + rg["PGT_REGRESS_PGBIN"], "--inputdir=" + rg["PGT_REGRESS_SRC"],
            "--outputdir=" + outdir, "--dlpath=" + rg["PGT_REGRESS_LIB"],
            "--schedule=" + os.path.join(rg["PGT_REGRESS_SRC"], "parallel_schedule"),
            "--host=127.0.0.1", "--port=%d" % port, "--user=postgres"]
    with open(os.path.join(outdir, "pg_regress.log"), "w") as log:
        p = subprocess.Popen(args, cwd=outdir, stdout=log, stderr=subprocess.STDOUT, env=env,
                             start_new_session=True)
        try:
            rc = p.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            rc = "timeout"
    with open(os.path.join(outdir, "pg_regress.log"), errors="replace") as f:
        summary = f.read()
    return rc, summary


def result(outdir, name):
    try:
        with open(os.path.join(outdir, "results", name + ".out"), "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def diff(direct, pooled, name, limit=4000):
    a = (direct or b"").decode(errors="replace").splitlines()
    b = (pooled or b"(no result file)").decode(errors="replace").splitlines()
    text = "\n".join(difflib.unified_diff(a, b, "direct/" + name, "pooled/" + name, lineterm="", n=1))
    return text[:limit]


@pytest.fixture(scope="module")
def regress_cluster():
    with throwaway_cluster("pgtandem-regress-") as c:
        yield c


def test_the_parallel_schedule_through_transaction_pooling_matches_a_direct_run(regress_cluster, tmp_path):
    rg = regress_env()
    tests = schedule_tests(os.path.join(rg["PGT_REGRESS_SRC"], "parallel_schedule"))
    allowed = allowed_differences()
    unknown = sorted(set(allowed) - set(tests))
    assert not unknown, "%s lists tests not in the schedule: %s" % (ALLOWED, unknown)

    # the server writes into the results (COPY TO): a directory its user
    # can reach, not pytest's private tmp_path
    work = tempfile.mkdtemp(prefix="pgtandem-regress-")
    os.chmod(work, 0o755)
    direct_dir, pooled_dir = os.path.join(work, "direct"), os.path.join(work, "pooled")

    rc, summary = run_schedule(rg, regress_cluster.port, direct_dir)
    assert rc in (0, 1), "pg_regress direct: exit %s\n%s" % (rc, summary[-3000:])
    failed_direct = re.findall(r"^\s*(\S+)\s+\.\.\. FAILED", summary, re.M)
    # a direct run failing its own expected output would make the
    # comparison meaningless; a source a minor release away from the server
    # (prepare.sh's fallback) may fail a test or two
    assert len(failed_direct) <= (0 if rg["PGT_REGRESS_VERSION"] == installed_version() else 5), \
        "pg_regress direct failed against its expected output: %s\n%s" % (failed_direct, summary[-3000:])

    users = write_users_file(str(tmp_path / "regress-users.json"), {"postgres": {"password": "postgres"}})
    proxy = Proxy(regress_cluster, extra_args=["--auth", "scram", "--users-file", users, "--pool-mode", "transaction",
                                               "--pool-size", str(POOL_SIZE), "--server-reset-query-always", "true"])
    try:
        rc, summary = run_schedule(rg, proxy.port, pooled_dir)
    finally:
        proxy.stop()
    assert rc in (0, 1), "pg_regress through the pool: exit %s\n%s\n%s" % (rc, summary[-3000:], proxy.log_tail())

    differing = [t for t in tests if result(direct_dir, t) is None or result(direct_dir, t) != result(pooled_dir, t)]
    unexpected = [t for t in differing if t not in allowed]
    print("pg_regress %s, %d tests: %d differ through the pool (%s), %d unexpected" % (
        rg["PGT_REGRESS_VERSION"], len(tests), len(differing), " ".join(differing) or "none", len(unexpected)))
    assert not unexpected, "%d of %d tests differ through the pool and are not in %s:\n%s" % (
        len(unexpected), len(tests), ALLOWED,
        "\n".join(diff(result(direct_dir, t), result(pooled_dir, t), t) for t in unexpected))
    shutil.rmtree(work, ignore_errors=True)


def installed_version():
    return subprocess.run(["dpkg-query", "-W", "-f=${Version}", "postgresql-15"],
                          capture_output=True, text=True).stdout

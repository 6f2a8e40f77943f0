"""Migrations as tests drive them: `pgtandem` runs (the CLI against a
database or a proxy's admin API), migration files (config/examples, the
seeds' checks_unify), the legacy data they apply to, and the options a
session of the new release connects with."""
import json
import os
import subprocess
import tempfile

from .ports import BIN, SANITIZER_MARKS, TOP

__all__ = ["EXAMPLES", "run_pgtandem", "migrate", "pmigrate", "proxy_start", "write_migration", "unify",
           "load_legacy", "new_shape_options"]

EXAMPLES = os.path.join(TOP, "config", "examples")


def run_pgtandem(args, env=None, timeout=600, input=None):
    """Runs bin/pgtandem with args; returns CompletedProcess (text). Fails the
    test if a sanitizer reported anything."""
    penv = dict(os.environ)
    penv.update(env or {})
    r = subprocess.run([BIN] + list(args), capture_output=True, text=True, env=penv, timeout=timeout,
                       input=input)
    for mark in SANITIZER_MARKS:
        assert mark not in r.stderr, "sanitizer report:\n" + r.stderr[-4000:]
    return r


def migrate(db, *args, timeout=600):
    """`pgtandem migrate ARGS --db DB`."""
    return run_pgtandem(["migrate"] + list(args) + ["--db", db], timeout=timeout)


def pmigrate(proxy, *args, timeout=300, env=None):
    """`pgtandem migrate ARGS --proxy` against the proxy's admin API."""
    return run_pgtandem(["migrate"] + list(args) + ["--proxy", "http://127.0.0.1:%d" % proxy.admin_port],
                        env=env, timeout=timeout)


def proxy_start(proxy, path):
    """`migrate start PATH --proxy`, which must succeed."""
    r = pmigrate(proxy, "start", path)
    if r.returncode == 1 and "advisory lock" in r.stderr:
        # right after the expand child exits its backend may still hold the
        # engine lock when the proxy takes it; submitting again resumes
        r = pmigrate(proxy, "start", path)
    assert r.returncode == 0, r.stdout + r.stderr + proxy.log()[-3000:]
    return r


def write_migration(obj, directory=None):
    """The migration `obj` written to a new JSON file; returns its path."""
    fd, path = tempfile.mkstemp(prefix="mig-", suffix=".json", dir=directory)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2)
    return path


def unify(backfill=None):
    """config/examples/checks_unify.json as a dict, its backfill settings
    replaced by `backfill` when given (write_migration makes it a file)."""
    with open(os.path.join(EXAMPLES, "checks_unify.json")) as f:
        m = json.load(f)
    if backfill is not None:
        m["backfill"] = backfill
    return m


def load_legacy(db, nrows=5000):
    """config/examples/checks_legacy.sql with `nrows` rows, into `db`."""
    subprocess.run(["psql", db, "-qAtX", "-v", "ON_ERROR_STOP=1", "-v", "rows=%d" % nrows,
                    "-f", os.path.join(EXAMPLES, "checks_legacy.sql")], check=True, capture_output=True)


def new_shape_options(name):
    """The `options` of a session of the release that migration `name` brings."""
    return "-c pgtandem.version=%s -c search_path=pgtandem_%s,public" % (name, name)


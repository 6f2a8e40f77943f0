"""Helpers shared by the Python parts of the benchmark drivers: the bench
database on the throwaway cluster, the description of the machine and server
that every results file starts with, and the bench migration (the three
`checks` renames of the seeds' production step, two of them to jsonb)."""
import datetime
import os
import platform
import subprocess

import psycopg

BENCH_MIGRATION = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_unify.json")


def bench_database():
    """Creates the database `bench` afresh on the cluster of $PGT_SUPER_URI;
    returns its URI."""
    admin = os.environ["PGT_SUPER_URI"]
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS bench")
        c.execute("CREATE DATABASE bench")
    return admin.replace("/appdb?", "/bench?")


def run_header(db):
    """date, machine and postgres: the fields every results file starts with."""
    version = subprocess.run(["psql", db, "-qAtX", "-c", "SHOW server_version"], capture_output=True,
                             text=True).stdout.strip()
    return {"date": datetime.datetime.utcnow().isoformat(timespec="seconds") + "Z",
            "machine": "%s, %d cpus" % (platform.platform(), os.cpu_count()),
            "postgres": version}

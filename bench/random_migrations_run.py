"""The loop of bench/random_migrations.sh: COUNT random migration files from
SEED (tests/integration/support/randmig.py), each run offline on a twin
and online with `pgtandem migrate start FILE.sql`, then complete or
rollback; a line per file, failures shrunk and written to FAILDIR, and a
summary: refusals by reason, then the line
`N files: A online and identical, R refused before DDL, F failures`
(N leaves out the files Postgres itself refuses offline: skipped). A file
whose schema equals the twin's but for the order of a table's columns is
online and identical (the order is not part of the project's rule: a
change of type adds a second column at the end), counted apart.

    python3 bench/random_migrations_run.py ENVFILE SEED COUNT FAILDIR [KINDS]

KINDS: comma-separated statement kinds (default: all of randmig.ALL_KINDS;
"today": the ones `make test` draws). WRITERS=1: during each migration that
completes, the old release (directly) and the new release (its version's
options) insert rows, which the twin takes before and after the file.
JOBS=N: N files at once, each in a process of its own (every file has
databases of its own); the lines still come in the seed's order.

    python3 bench/random_migrations_run.py ENVFILE --replay FILE.sql...

runs reproducers again (tests/integration/randmig_failures/, each with its
base beside it) and prints each one's outcome now: "failure" while the bug
is there.

    python3 bench/random_migrations_run.py ENVFILE --files SEED K...

runs files K (1-based, as the run's lines number them) of SEED again, and
prints each one's statements and outcome: a refusal looked at on its own.
"""
import collections
import multiprocessing
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))

from support.pg import Cluster, read_env  # noqa: E402
from support import randmig  # noqa: E402


def replay(envfile, paths):
    runner = randmig.Runner(Cluster(read_env(envfile)), tempfile.mkdtemp(prefix="randmig-"))
    for path in paths:
        outcome, detail = runner.run(randmig.case_from_file(path))
        print("%s: %s (%s)" % (os.path.basename(path), outcome, detail[:200]), flush=True)
    return 0


def files(envfile, seed, numbers):
    runner = randmig.Runner(Cluster(read_env(envfile)), tempfile.mkdtemp(prefix="randmig-"))
    for k in numbers:
        case = randmig.random_case(seed, int(k) - 1, randmig.ALL_KINDS)
        outcome, detail = runner.run(case)
        print("%s/%s (%s):\n  %s\n  -> %s (%s)" % (seed, k, "rollback" if case.rollback else "complete",
                                                 ";\n  ".join(case.statements), outcome, detail), flush=True)
    return 0


# one Runner per process of the pool (JOBS): set by start_worker
WORKER = {}


def start_worker(envfile, seed, kinds, faildir, writers):
    WORKER.update(runner=randmig.Runner(Cluster(read_env(envfile)), tempfile.mkdtemp(prefix="randmig-"),
                                        writers=writers), seed=seed, kinds=kinds, faildir=faildir)


def run_one(k):
    """File k of the seed: (k, outcome, detail, seconds, statements, shrunk)
    where shrunk is (path, detail, statements) for a failure."""
    w = WORKER
    case = randmig.random_case(w["seed"], k, w["kinds"])
    t1 = time.time()
    outcome, detail = w["runner"].run(case)
    took = time.time() - t1
    shrunk = None
    if outcome == "failure":
        stmts, sdetail = randmig.shrink_failure(w["runner"], case, detail)
        shrunk = (randmig.write_reproducer(w["faildir"], case, stmts, sdetail), sdetail, len(stmts))
    return k, outcome, detail, took, len(case.statements), shrunk


def main():
    if len(sys.argv) > 2 and sys.argv[2] == "--replay":
        return replay(sys.argv[1], sys.argv[3:])
    if len(sys.argv) > 3 and sys.argv[2] == "--files":
        return files(sys.argv[1], sys.argv[3], sys.argv[4:])
    envfile, seed, count, faildir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    kinds = randmig.ALL_KINDS
    if len(sys.argv) > 5 and sys.argv[5]:
        kinds = randmig.KINDS_CARRIED_TODAY if sys.argv[5] == "today" else sys.argv[5].split(",")
    init = (envfile, seed, kinds, faildir, os.environ.get("WRITERS") == "1")
    jobs = max(1, int(os.environ.get("JOBS", "1")))
    counts = collections.Counter()
    reasons = collections.Counter()
    failures = []
    t0 = time.time()
    if jobs == 1:
        start_worker(*init)
        results = map(run_one, range(count))
    else:
        pool = multiprocessing.Pool(jobs, initializer=start_worker, initargs=init)
        results = pool.imap(run_one, range(count))
    for k, outcome, detail, took, nstmts, shrunk in results:
        counts[outcome] += 1
        counts["after rollback"] += outcome == "identical" and detail == "rollback"
        print("%4d/%d %-9s %5.1fs %2d statements (%s)" % (k + 1, count, outcome, took, nstmts, detail[:140]),
              flush=True)
        if outcome == "identical" and "column order" in detail:
            # column order is not part of the rule (tests/integration/support/pg.py): counted apart
            counts["order"] += 1
        if outcome == "refused":
            reasons[detail] += 1
        elif shrunk:
            path, sdetail, after = shrunk
            failures.append((path, sdetail, nstmts, after))
            print("     shrunk %d -> %d statements: %s" % (nstmts, after, path), flush=True)
    n = counts["identical"] + counts["refused"] + counts["failure"]
    print()
    print("seed %s, %d files drawn in %.0f s (JOBS=%d), %d skipped (Postgres refuses them offline)"
          % (seed, count, time.time() - t0, jobs, counts["skipped"]))
    if failures:
        print("failures (shrunk, in %s):" % faildir)
        for path, d, before, after in failures:
            print("  %s (%d -> %d statements): %s" % (os.path.basename(path), before, after, d[:200]))
    print("online and identical after complete: %d, after rollback: %d; of them, column order differs from"
          " the twin's only: %d" % (counts["identical"] - counts["after rollback"], counts["after rollback"],
                                     counts["order"]))
    print("refusals by reason:")
    for r, c in reasons.most_common():
        print("  %4d  %s" % (c, r))
    print("%d files: %d online and identical, %d refused before DDL, %d failures"
          % (n, counts["identical"], counts["refused"], counts["failure"]))
    return 1 if counts["failure"] else 0


if __name__ == "__main__":
    sys.exit(main())

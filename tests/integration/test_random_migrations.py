"""Random migrations with Postgres as the oracle, a short seeded run (issue
60; the long run is bench/random_migrations.sh). Each file of the seed
(support/randmig.py: a random base schema with rows, a migration of 1-12
statements as an ORM writes them) runs offline on a twin and online with
`migrate start FILE.sql`, then `complete` (the schema dump, every table's
rows and leftovers equal the twin's) or `rollback` (the start's, but for
what a rollback keeps). Only the statement kinds the engine carries today
are drawn (randmig.KINDS_CARRIED_TODAY); a kind that fails is left out
there until it is fixed, and its shrunk reproducer kept in
randmig_failures/.

The files are split into chunks so that xdist spreads them; each chunk must
have no failure and files online and identical, so that it cannot pass by
refusing everything; a reproducer whose answer is a refusal (7-29) checks
that the runner tells a refusal from a failure. The ASan build is several times slower: fewer
files there."""
import collections
import os

import pytest

from support import randmig

SEED = os.environ.get("PGT_RANDMIG_SEED", "20261128")
RELEASE = os.environ.get("PGT_VARIANT", "rel") == "rel"
CHUNKS = 4 if RELEASE else 2
PER_CHUNK = 10 if RELEASE else 8


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_random_migrations_end_where_postgres_ends(cluster, tmp_path, chunk):
    runner = randmig.Runner(cluster, str(tmp_path / "work"))
    outcomes = collections.Counter()
    failures = []
    for k in range(chunk * PER_CHUNK, (chunk + 1) * PER_CHUNK):
        case = randmig.random_case(SEED, k, randmig.KINDS_CARRIED_TODAY)
        outcome, detail = runner.run(case)
        outcomes[outcome] += 1
        if outcome == "identical":
            outcomes["identical after " + detail] += 1
        if outcome == "failure":
            # a small budget: enough to name the statement, not to hold the suite
            stmts, detail = randmig.shrink_failure(runner, case, detail, budget=8)
            path = randmig.write_reproducer(str(tmp_path / "failures"), case, stmts, detail)
            failures.append("%s: %s\n%s" % (path, detail, case.text(stmts)))
    assert not failures, "\n\n".join(failures)
    assert outcomes["identical"] >= 1, outcomes
    # a chunk may draw nothing refused now that most kinds run online; the
    # refusal itself is checked on a file whose refusal is known (below)


REPRODUCERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "randmig_failures")


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(REPRODUCERS)
                                        if f.endswith(".sql") and not f.endswith(".base.sql")))
def test_each_failure_the_generator_found_now_ends_where_postgres_ends(cluster, tmp_path, name):
    """Every failure a run shrank to its smallest file (a rollback leaving an
    index renamed, a batched DELETE skipping its foreign keys' actions, a
    column's NOT NULL or default lost to a later statement of the file...),
    replayed: online and identical, or refused before any DDL, never a
    failure again."""
    runner = randmig.Runner(cluster, str(tmp_path / "work"))
    outcome, detail = runner.run(randmig.case_from_file(os.path.join(REPRODUCERS, name)))
    assert outcome in ("identical", "refused"), (outcome, detail)
    if name == "7-29.sql":  # a DELETE after a drop of a key referencing its rows: refused before any DDL
        assert outcome == "refused" and "drops the foreign key" in detail, (outcome, detail)
    if name == "87727-205-written.sql":  # writes NULL under a dropped NOT NULL, then a SET NOT NULL on its fill
        assert outcome == "refused" and "may write NULL into it" in detail, (outcome, detail)
    if name.startswith(("87727-205", "87727-234")) and name != "87727-205-written.sql":  # fills keep their place: online
        assert outcome == "identical", (outcome, detail)
    if name == "31415-9.sql":  # an index the file made on a column it then retypes: refused, saying where to put it
        assert outcome == "refused" and "create_index creates index" in detail, (outcome, detail)
    if name == "31415-54-named-between.sql":  # the index made again is named before the rename: refused, saying so
        assert outcome == "refused" and "is made again above after its old index" in detail, (outcome, detail)
    elif name.startswith("31415-54"):  # a rename of what the file made under a dropped one's name: folded into it
        assert outcome == "identical", (outcome, detail)
    if name.startswith("214-213"):  # a batched statement never moves past one it does not commute with
        assert outcome == "identical", (outcome, detail)
    if name == "214-228-named-later.sql":  # the index renamed after a retype is named again: refused, saying why
        assert outcome == "refused" and "so this rename runs at complete" in detail, (outcome, detail)
    elif name.startswith("214-228"):  # a rename of an index on a retyped column names the rebuilt index
        assert outcome == "identical", (outcome, detail)
    if name.startswith(("214-70-", "214-100-", "214-106-", "214-108-")):  # were refused: a retype after its table's renames
        assert outcome == "identical", (outcome, detail)
    if name.startswith(("214-92-", "214-109-")):  # were refused: an index renamed, then dropped
        assert outcome == "identical", (outcome, detail)
    if name == "214-261.sql":  # a retype after its column's renames with a statement between: refused, saying so
        assert outcome == "refused" and "changes after a RENAME COLUMN above" in detail, (outcome, detail)
    if name.startswith("31415-30-"):  # a retype after its column's rename with statements between: refused
        assert outcome == "refused" and "changes after a RENAME COLUMN above" in detail, (outcome, detail)
    if name.startswith("31415-264"):  # a retype keeps the NOT NULL and default earlier statements left
        assert outcome == "identical", (outcome, detail)
    if name.startswith("87727-202"):  # each rollback undoes what the file made, in reverse dependency order
        assert (outcome, detail) == ("identical", "rollback"), (outcome, detail)
    if name == "31415-187-rename-value.sql":  # RENAME VALUE after the type's rename: refused, saying what instead
        assert outcome == "refused" and "cannot run online" in detail, (outcome, detail)
    elif name.startswith("31415-187"):  # a value added around a type's rename: kept where expand put it
        assert outcome == "identical", (outcome, detail)

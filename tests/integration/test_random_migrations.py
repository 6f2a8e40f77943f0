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
import re

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


# Where "online or refused" is not enough: what a reproducer must end in.
# The first entry whose key is the file's name, or a prefix of it (a key
# not ending in ".sql"), decides: (outcome, text its detail holds), or
# (outcome, None) for the outcome alone, or ("identical", "=D") for the
# detail D exactly.
EXPECTED = [
    ("86348-124-seen.sql", "refused", "is changed by operations"),  # retyped twice, the first type seen: what to write
    ("86348-", "identical", None),  # were refused: a column retyped twice, composed into one change
    ("73143-158", "identical", None),  # were refused: an index or key under the name a constraint's or index's rename frees
    ("73143-88-", "identical", None),  # were refused: a column added under a name a rename with a second column frees
    ("73143-12.sql", "identical", None),  # was refused: a fill reading a table by the name a rename gives it at expand
    ("73143-12-", "identical", None),
    ("7-29.sql", "identical", None),  # a DELETE after a drop of a key referencing its rows: waits for the drop
    ("13667-258", "identical", None),  # a data statement waits for a dropped constraint or unique index it meets
    ("13667-271", "identical", None),  # rows a batch's foreign-key action writes get the tandem rule
    ("90003-139", "identical", None),  # an index the file made on a partitioned table, then dropped: dropped
    ("90003-13", "identical", None),  # a DELETE waits for a dropped key its cascades meet
    ("58841-295-key.sql", "refused", "the column added here under the name"),  # an index key as SQL on it
    ("58841-295-other.sql", "refused", "the column added here under the name"),  # another column's CHECK reads it
    ("58841-295", "identical", None),  # a key, an index or a CHECK on a column added under a name a rename frees
    ("90003-351", "identical", None),  # a column added under a name a rename frees: statements reach it, not the old one
    ("90003-519-cast.sql", "refused", "after the ALTER TYPE ... RENAME"),  # a cast to a type renamed at complete
    ("90003-519", "identical", None),  # a column of a type renamed at complete: made of the type that gets the name
    ("90003-413", "identical", None),  # an index renamed beside its column's rename: the rename runs last
    ("90003-499", "identical", None),
    ("90003-108-named.sql", "refused", "this DO block reads"),  # the key made above under its name: stays refused
    ("90003-108", "identical", None),  # were refused: a DO block's key on a table renamed above, its table's name before
    ("90003-113", "identical", None),  # were refused: a DO block's type named like a column
    ("90003-582", "identical", None),
    ("90011-8-reads.sql", "refused", "the type of"),  # a DELETE reading a retyped column waits for complete
    ("90011-8", "identical", None),  # was refused: one not touching it runs where it stands  # a fill is folded only when no later statement changes what it reads
    ("90002-314", "identical", None),  # NOT NULL set then dropped (or the reverse), apart: as the file leaves it
    ("90002-919", "identical", None),
    ("90002-383", "identical", None),  # a literal default set before a retype keeps the type it was set on
    ("90001-50-named-later.sql", "refused", "so this rename runs at complete"),  # renamed, named, then retyped
    ("90001-50", "identical", None),  # an index renamed before its column's retype: the rename runs last
    ("13667-242-named-between.sql", "refused", "creates index"),  # renamed between: keeps its place
    ("13667-242-check-after.sql", "identical", None),  # was lost with the old column: now over the second one
    ("13667-242-partial-after.sql", "identical", None),  # was lost with the old column: now over the second one
    ("13667-242", "identical", None),  # an index made before its column's retype is made after it, on the new type
    ("87727-205-written.sql", "refused", "may write NULL into it"),  # NULL under a dropped NOT NULL, then SET NOT NULL
    ("87727-205", "identical", None),  # fills keep their place: online
    ("87727-234", "identical", None),
    ("87727-202", "identical", "=rollback"),  # each rollback undoes what the file made, in reverse dependency order
    ("31415-9.sql", "identical", None),  # an index the file made on a column it then retypes: made after the retype
    ("31415-54-named-between.sql", "refused", "is made again above after its old index"),  # named before the rename
    ("31415-54", "identical", None),  # a rename of what the file made under a dropped one's name: folded into it
    ("31415-30-", "refused", "changes after a RENAME COLUMN above"),  # a retype after its column's rename, apart
    ("31415-264", "identical", None),  # a retype keeps the NOT NULL and default earlier statements left
    ("31415-187-rename-value.sql", "refused", "cannot run online"),  # RENAME VALUE after the type's rename
    ("31415-187", "identical", None),  # a value added around a type's rename: kept where expand put it
    ("214-213", "identical", None),  # a batched statement never moves past one it does not commute with
    ("214-228-named-later.sql", "refused", "so this rename runs at complete"),  # renamed after a retype, named again
    ("214-228", "identical", None),  # a rename of an index on a retyped column names the rebuilt index
    ("214-70-", "identical", None),  # were refused: a retype after its table's renames
    ("214-100-", "identical", None),
    ("214-106-", "identical", None),
    ("214-108-", "identical", None),
    ("214-92-", "identical", None),  # were refused: an index renamed, then dropped
    ("214-109-", "identical", None),
    ("214-261.sql", "refused", "changes after a RENAME COLUMN above"),  # a retype after its column's renames, apart
]


def expected(name):
    return next(((o, t) for key, o, t in EXPECTED
                 if name == key or (not key.endswith(".sql") and name.startswith(key))), None)


def reproducers():
    """Every reproducer for the release build; for the sanitizer build, which
    looks for memory errors on the same code paths several times slower,
    only the file each class was found as (SEED-K.sql), not its siblings:
    the siblings' outcomes are the release build's to check."""
    names = sorted(f for f in os.listdir(REPRODUCERS) if f.endswith(".sql") and not f.endswith(".base.sql"))
    return names if RELEASE else [n for n in names if re.match(r"^\d+-\d+\.sql$", n)]


@pytest.mark.parametrize("name", reproducers())
def test_each_failure_the_generator_found_now_ends_where_postgres_ends(cluster, tmp_path, name):
    """Every failure a run shrank to its smallest file (a rollback leaving an
    index renamed, a batched DELETE skipping its foreign keys' actions, a
    column's NOT NULL or default lost to a later statement of the file...),
    replayed: online and identical, or refused before any DDL, never a
    failure again."""
    runner = randmig.Runner(cluster, str(tmp_path / "work"))
    outcome, detail = runner.run(randmig.case_from_file(os.path.join(REPRODUCERS, name)))
    assert outcome in ("identical", "refused"), (outcome, detail)
    want = expected(name)
    if want:
        outcome_wanted, text = want
        if text and text.startswith("="):
            assert (outcome, detail) == (outcome_wanted, text[1:]), (outcome, detail)
        else:
            assert outcome == outcome_wanted and (text is None or text in detail), (outcome, detail)

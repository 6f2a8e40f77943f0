"""How ORMs add a required column to a table that has rows, through the
proxy with both releases writing:

    ALTER TABLE "apikey" ADD COLUMN "reference_id" text;
    UPDATE "apikey" SET "reference_id" = "user_id" WHERE "reference_id" IS NULL;
    ALTER TABLE "apikey" ALTER COLUMN "reference_id" SET NOT NULL;

The UPDATE becomes the add_column's "up" and the NOT NULL its nullable
false: the backfill fills the rows in batches, every insert of the old
release (which does not know the column) gets it from the same expression,
and the column is NOT NULL once complete. Before, the UPDATE ran inside the
expand's transaction, holding the table while it rewrote every row, and
from the expand on every old-release INSERT failed with `violates check
constraint "pgtandem_nn..."` (no up to fill it). Every row is compared at
the end, and what each release wrote is counted against what the table
holds.

drizzle-kit wrote the same fill beside a DROP NOT NULL of the column it
copies (Dokploy's `0150_nappy_blue_blade.sql`); that DROP sent every data
statement of the table to the contract, the UPDATE was no "up" any more,
and the SET NOT NULL was refused as "added above without a value" though
the file fills it. The fill writes only the new column: it folds the same
way, and the DROP NOT NULL takes effect at the contract."""
import threading
import time

import psycopg
import pytest

from support import ClientThreads, new_shape_options, pmigrate, proxy_uri, sql, wait_for

ROWS = 50000
NAME = "0007_apikey_reference"
FILL = """ALTER TABLE "apikey" ADD COLUMN "reference_id" text;
UPDATE "apikey" SET "reference_id" = "user_id" WHERE "reference_id" IS NULL;
ALTER TABLE "apikey" ALTER COLUMN "reference_id" SET NOT NULL;
"""
DRIZZLE_NAME = "0150_nappy_blue_blade"
DRIZZLE_FILL = """ALTER TABLE "apikey" ALTER COLUMN "user_id" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "apikey" ADD COLUMN "config_id" text DEFAULT 'default' NOT NULL;--> statement-breakpoint
ALTER TABLE "apikey" ADD COLUMN "reference_id" text;--> statement-breakpoint
UPDATE "apikey" SET "reference_id" = "user_id" WHERE "reference_id" IS NULL;--> statement-breakpoint
ALTER TABLE "apikey" ALTER COLUMN "reference_id" SET NOT NULL;
"""


class Writers(ClientThreads):
    """An old-release writer (inserts without the column, and a read of a
    row each time) and a new-release one (inserts with it), each statement
    timed; every insert acknowledged is kept."""

    def __init__(self, uri, name):
        self.uri, self.name, self.stop, self.errors = uri, name, threading.Event(), []
        self.old_ids, self.new_ids, self.waits = [], [], []
        self.new_shape = threading.Event()  # set by the test once the start has made it
        self.threads = [threading.Thread(target=self.old), threading.Thread(target=self.new)]

    def old(self):
        try:
            with psycopg.connect(self.uri, autocommit=True) as c:
                i = 0
                while not self.stop.is_set():
                    i += 1
                    t0 = time.monotonic()
                    c.execute("INSERT INTO apikey (id, user_id) VALUES (%s, %s)", (1000000 + i, "old-%d" % i))
                    c.execute("SELECT user_id FROM apikey WHERE id = %s", (1 + i % ROWS,)).fetchone()
                    self.waits.append((time.monotonic(), time.monotonic() - t0))
                    self.old_ids.append(1000000 + i)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(("old", e))

    def new(self):
        try:
            while not self.new_shape.wait(0.5):
                if self.stop.is_set():
                    return
            with psycopg.connect(self.uri, autocommit=True, options=new_shape_options(self.name)) as c:
                i = 0
                while not self.stop.is_set():
                    i += 1
                    c.execute("INSERT INTO apikey (id, user_id, reference_id) VALUES (%s, %s, %s)",
                              (2000000 + i, "new-%d" % i, "ref-%d" % i))
                    self.new_ids.append(2000000 + i)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(("new", e))


@pytest.mark.parametrize("name,fill", [(NAME, FILL), (DRIZZLE_NAME, DRIZZLE_FILL)], ids=["prisma", "drizzle-kit"])
def test_an_orms_required_column_runs_online_with_both_releases_writing(db, proxy_factory, tmp_path, name, fill):
    sql(db, "DROP TABLE IF EXISTS apikey; CREATE TABLE apikey (id bigint PRIMARY KEY, user_id text NOT NULL);"
            "INSERT INTO apikey SELECT g, 'user-' || g FROM generate_series(1, %d) g; ANALYZE apikey;" % ROWS)
    path = tmp_path / (name + ".sql")
    path.write_text(fill)
    proxy = proxy_factory(extra_args=["--engine-db", db])
    with Writers(proxy_uri(proxy, db), name) as w:
        wait_for(lambda: len(w.old_ids) >= 50, 30, "the old release's first writes")
        started = time.monotonic()
        r = pmigrate(proxy, "start", str(path))
        assert r.returncode == 0, r.stdout + r.stderr
        w.new_shape.set()
        wait_for(lambda: proxy.admin("GET", "/migrations/current")[1]["phase"] == "active", 300, "the backfill's end",
                 detail=proxy.log_tail)
        active = time.monotonic()
        wait_for(lambda: len(w.new_ids) >= 20, 30, "the new release's writes")
        n_old = len(w.old_ids)
        wait_for(lambda: len(w.old_ids) >= n_old + 20, 30, "old-release writes while active")
        assert not w.errors, w.errors
    assert not w.errors, w.errors
    longest = max(s for t, s in w.waits if started <= t <= active)
    r = pmigrate(proxy, "complete", "--force")
    assert r.returncode == 0, r.stdout + r.stderr

    # the offline end: a NOT NULL column, every row filled as the UPDATE and each release wrote it
    assert sql(db, "SELECT is_nullable FROM information_schema.columns WHERE table_name = 'apikey'"
                   " AND column_name = 'reference_id'") == [("NO",)]
    if fill is DRIZZLE_FILL:
        assert sql(db, "SELECT column_name, is_nullable FROM information_schema.columns WHERE table_name = 'apikey'"
                       " AND column_name IN ('user_id', 'config_id') ORDER BY 1") == [("config_id", "NO"),
                                                                                     ("user_id", "YES")]
        assert sql(db, "SELECT count(*) FROM apikey WHERE config_id IS DISTINCT FROM 'default'") == [(0,)]
    rows = dict(sql(db, "SELECT id, reference_id FROM apikey"))
    olds = set(w.old_ids)
    wrong = [(i, v) for i, v in rows.items()
             if v != ("user-%d" % i if i <= ROWS else "old-%d" % (i - 1000000) if i in olds
                      else "ref-%d" % (i - 2000000))]
    assert not wrong, (len(wrong), wrong[:5])
    assert len(rows) == ROWS + len(w.old_ids) + len(w.new_ids), (len(rows), len(w.old_ids), len(w.new_ids))
    assert set(w.new_ids) <= set(rows)
    print("%d rows; old release: %d writes, its longest statement during start and backfill %.0f ms;"
          " new release: %d writes" % (ROWS, len(w.old_ids), longest * 1000, len(w.new_ids)))

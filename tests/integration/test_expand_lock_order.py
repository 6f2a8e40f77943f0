"""The expand takes its tables' locks first, children before parents.

drizzle-kit moves foreign keys to a renamed table this way (Dokploy's
`0120_lame_captain_midlands.sql`):

    ALTER TABLE "user_temp" RENAME TO "user";
    ALTER TABLE "account" DROP CONSTRAINT "account_user_id_user_temp_id_fk";
    ALTER TABLE "account" ADD CONSTRAINT "account_user_id_user_id_fk" FOREIGN KEY ...

Run statement by statement, the expand held the renamed table ACCESS
EXCLUSIVE and then waited for `account`, while the app's INSERT into
`account` held it and waited for the renamed table to check its foreign
key: both waited until the expand's lock_timeout (200 ms) gave up, and the
next attempts met the next INSERT the same way (five in a row in the
replay, every old-release INSERT in the way waiting 205 ms). Now the
expand locks `account` before `user_temp` in one statement first: it waits
for an INSERT in flight holding nothing the INSERT needs. An old-release
writer inserts into `account` through the proxy as fast as it can while
the migration starts; no attempt of the expand may time out on a lock,
and every statement is timed."""
import threading
import time

import psycopg

from support import proxy_start, proxy_uri, sql, wait_for

BASE = """
DROP TABLE IF EXISTS account, user_temp, "user";
CREATE TABLE user_temp (id text PRIMARY KEY, email text);
CREATE TABLE account (id bigint PRIMARY KEY, user_id text NOT NULL,
                      CONSTRAINT account_user_id_user_temp_id_fk FOREIGN KEY (user_id) REFERENCES user_temp (id));
INSERT INTO user_temp SELECT 'u' || g, 'u' || g || '@example.com' FROM generate_series(1, 200) g;
INSERT INTO account SELECT g, 'u' || (g % 200 + 1) FROM generate_series(1, 2000) g;
"""
MOVE = """ALTER TABLE "user_temp" RENAME TO "user";--> statement-breakpoint
ALTER TABLE "account" DROP CONSTRAINT "account_user_id_user_temp_id_fk";
--> statement-breakpoint
ALTER TABLE "account" ADD CONSTRAINT "account_user_id_user_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."user"("id") ON DELETE cascade ON UPDATE no action;
"""


def test_an_expand_that_moves_a_foreign_key_does_not_deadlock_with_the_apps_inserts(db, proxy_factory, tmp_path):
    sql(db, BASE)
    path = tmp_path / "0120_lame_captain_midlands.sql"
    path.write_text(MOVE)
    proxy = proxy_factory(extra_args=["--engine-db", db])
    stop, waits, errors = threading.Event(), [], []

    def old_release():
        try:
            with psycopg.connect(proxy_uri(proxy, db), autocommit=True) as c:
                i = 0
                while not stop.is_set():
                    i += 1
                    t0 = time.monotonic()
                    c.execute("INSERT INTO account (id, user_id) VALUES (%s, %s)", (100000 + i, "u%d" % (i % 200 + 1)))
                    waits.append(time.monotonic() - t0)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    writer = threading.Thread(target=old_release)
    writer.start()
    try:
        wait_for(lambda: len(waits) > 200 or errors, 30, "the old release's first inserts")
        proxy_start(proxy, str(path))
        n = len(waits)
        wait_for(lambda: len(waits) > n + 50 or errors, 30, "inserts after the start")
    finally:
        stop.set()
        writer.join(30)
    assert not errors, errors
    log = proxy.log()
    assert "lock not available within" not in log, log[-3000:]
    written = sql(db, "SELECT count(*) FROM account WHERE id > 100000")[0][0]
    assert written == len(waits), (written, len(waits))
    print("%d inserts through the start, the longest %.1f ms" % (len(waits), max(waits) * 1000))

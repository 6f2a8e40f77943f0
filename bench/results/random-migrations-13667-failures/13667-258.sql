-- base schema: 13667-258.base.sql
-- then: migrate start; migrate complete
-- failure: start exit 1, changed: True: backfill batch on NAME.NAME (its first N rows) failed: ERROR:  duplicate key value violates unique constraint NAME
ALTER TABLE "ledger" DROP CONSTRAINT "ledger_level_key";
CREATE TYPE "Kind" AS ENUM ('inactive', 'active', 'ONE', 'THREE');
ALTER TABLE "ledger" RENAME TO "userRecord";
ALTER TABLE "note" ADD CONSTRAINT "note_body_check" CHECK ("body" IS NOT NULL OR true);
UPDATE "userRecord" SET "level" = 'upd-1' WHERE "level" IS NULL;

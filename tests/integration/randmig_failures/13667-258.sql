-- base schema: 13667-258.base.sql
-- then: migrate start; migrate complete
-- seed 13667's file 258: a unique constraint dropped (it stays until the contract), the table renamed, then an UPDATE writing values the constraint refuses: its batches met the constraint
ALTER TABLE "ledger" DROP CONSTRAINT "ledger_level_key";
CREATE TYPE "Kind" AS ENUM ('inactive', 'active', 'ONE', 'THREE');
ALTER TABLE "ledger" RENAME TO "userRecord";
ALTER TABLE "note" ADD CONSTRAINT "note_body_check" CHECK ("body" IS NOT NULL OR true);
UPDATE "userRecord" SET "level" = 'upd-1' WHERE "level" IS NULL;

-- base schema: 13667-258.base.sql
-- then: migrate start; migrate rollback
-- (sibling of 13667-258) rolled back before complete: the UPDATE that waits for the constraint's drop never ran
ALTER TABLE "ledger" DROP CONSTRAINT "ledger_level_key";
ALTER TABLE "ledger" RENAME TO "userRecord";
UPDATE "userRecord" SET "level" = 'upd-1' WHERE "level" IS NULL;

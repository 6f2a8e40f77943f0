-- base schema: 13667-258.base.sql
-- then: migrate start; migrate complete
-- (guard for 13667-258) a unique constraint dropped, then an UPDATE of another column: it meets nothing the drop changes, and keeps its batches at expand
ALTER TABLE "ledger" DROP CONSTRAINT "ledger_level_key";
UPDATE "ledger" SET "payload" = 'upd-2' WHERE "payload" IS NULL;
ALTER TABLE "ledger" ADD CONSTRAINT "ledger_payload_check" CHECK ("payload" IS NOT NULL) NOT VALID;

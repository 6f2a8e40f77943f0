-- base schema: 13667-258.base.sql
-- then: migrate start; migrate rollback
-- (sibling of 90001-50) rolled back: the rename, waiting for complete, never ran
ALTER INDEX "ledger_payload_lower_idx" RENAME TO "ledger_payload_lower_idx_r";
ALTER TABLE "ledger" ALTER COLUMN "payload" SET DATA TYPE varchar(200) USING "payload"::varchar(200);

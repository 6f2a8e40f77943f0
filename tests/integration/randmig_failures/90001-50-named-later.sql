-- base schema: 13667-258.base.sql
-- then: migrate start; migrate complete
-- (guard for 90001-50) the index's new name named again before the retype: the rename cannot wait for complete, so the file is refused before DDL
ALTER INDEX "ledger_payload_lower_idx" RENAME TO "ledger_payload_lower_idx_r";
COMMENT ON INDEX "ledger_payload_lower_idx_r" IS 'lower(payload)';
ALTER TABLE "ledger" ALTER COLUMN "payload" SET DATA TYPE varchar(200) USING "payload"::varchar(200);

-- base schema: 13667-258.base.sql
-- then: migrate start; migrate complete
-- seed 90001's file 50, on another base: an expression index renamed, then its column retyped; the retype's copy of the index was made from the catalog under the old name and took it at the contract, so the rename was lost
ALTER INDEX "ledger_payload_lower_idx" RENAME TO "ledger_payload_lower_idx_r";
ALTER TABLE "ledger" ALTER COLUMN "payload" SET DATA TYPE varchar(200) USING "payload"::varchar(200);

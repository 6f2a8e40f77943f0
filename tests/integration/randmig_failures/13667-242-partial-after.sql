-- base schema: 13667-258.base.sql
-- then: migrate start; migrate complete
-- (sibling of 13667-242) a column retyped, then a partial index whose predicate reads it: built over the old column, which the contract drops with it (the index lost); now its predicate reads the second column
ALTER TABLE "ledger" ALTER COLUMN "payload" SET DATA TYPE varchar(80);
CREATE INDEX "ledger_id_payload_idx" ON "ledger" ("id") WHERE "payload" IS NOT NULL;

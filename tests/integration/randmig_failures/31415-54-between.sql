-- base schema: 31415-54.base.sql
-- then: migrate start; migrate complete
-- seed 31415 again, file 55 as this stop's run shrank it: a constraint of another name made between the create and the rename, which kept the rename as written (on the old index)
DROP INDEX "ledger_body_lower_idx";
CREATE INDEX "ledger_body_lower_idx" ON "ledger"("status");
ALTER TABLE "ledger" ADD CONSTRAINT "ledger_body_key" UNIQUE ("body");
ALTER INDEX "ledger_body_lower_idx" RENAME TO "ledger_body_lower_idx_r";

-- base schema: 31415-54.base.sql
-- then: migrate start; migrate rollback
-- sibling of 31415-54.sql: the rename of the index the file just created under a dropped one's name, rolled back
DROP INDEX "ledger_body_lower_idx";
CREATE INDEX "ledger_body_lower_idx" ON "ledger"("status");
ALTER INDEX "ledger_body_lower_idx" RENAME TO "ledger_body_lower_idx_r";

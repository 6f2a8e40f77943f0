-- base schema: 31415-54.base.sql
-- then: migrate start; migrate complete
-- the index made again is named by a statement between its create and the rename: refused before DDL, saying where to give it the name
DROP INDEX "ledger_body_lower_idx";
CREATE INDEX "ledger_body_lower_idx" ON "ledger"("status");
COMMENT ON INDEX "ledger_body_lower_idx" IS 'by status';
ALTER INDEX "ledger_body_lower_idx" RENAME TO "ledger_body_lower_idx_r";

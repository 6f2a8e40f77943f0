-- base schema: 90003-413.base.sql
-- then: migrate start; migrate complete
-- a sibling of 90003-413: the index renamed before its column's rename and the CHECK (failed the same way)
ALTER INDEX "account_amount_idx" RENAME TO "account_amount_idx2";
ALTER TABLE "account" RENAME COLUMN "amount" TO "extra";
ALTER TABLE "account" ADD CONSTRAINT "account_extra_check" CHECK ("extra" IS NOT NULL OR true);

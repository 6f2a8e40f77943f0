-- base schema: 90003-413.base.sql
-- then: migrate start; migrate complete
-- a guard beside 90003-413: no CHECK, the column renamed in place
ALTER TABLE "account" RENAME COLUMN "amount" TO "extra";
ALTER TABLE "account" RENAME TO "SessionEntry";
ALTER INDEX "account_amount_idx" RENAME TO "SessionEntry_amount_idx";

-- base schema: 90003-413.base.sql
-- then: migrate start; migrate complete
-- seed 90003's file 414: a column renamed, its table renamed, its index renamed, then a CHECK on the column's new name, for which the plan carries the column to a second one: the index's rename ran at expand on the old column's index, and the copy took the old name at the contract; an index's rename beside a column rename runs last at complete now
ALTER TABLE "account" RENAME COLUMN "amount" TO "extra";
ALTER TABLE "account" RENAME TO "SessionEntry";
ALTER INDEX "account_amount_idx" RENAME TO "SessionEntry_amount_idx";
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'SessionEntry_extra_check') THEN
    ALTER TABLE "SessionEntry" ADD CONSTRAINT "SessionEntry_extra_check" CHECK ("extra" IS NOT NULL OR true);
  END IF;
END $$;

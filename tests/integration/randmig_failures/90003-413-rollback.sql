-- base schema: 90003-413.base.sql
-- then: migrate start; migrate rollback
-- a guard beside 90003-413: rolled back
ALTER TABLE "account" RENAME COLUMN "amount" TO "extra";
ALTER TABLE "account" RENAME TO "SessionEntry";
ALTER INDEX "account_amount_idx" RENAME TO "SessionEntry_amount_idx";
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'SessionEntry_extra_check') THEN
    ALTER TABLE "SessionEntry" ADD CONSTRAINT "SessionEntry_extra_check" CHECK ("extra" IS NOT NULL OR true);
  END IF;
END $$;

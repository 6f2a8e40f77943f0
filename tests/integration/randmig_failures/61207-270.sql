-- base schema: 61207-270.base.sql
-- then: migrate start; migrate complete
-- seed 61207's file 271 (refused, not needed): RENAME COLUMN label TO level9, ADD COLUMN label text, then SET DEFAULT on it: refused as a change of a column added under a freed name; a default set or dropped alone changes the new shape's view at expand and the table at the contract, after the column has its name
UPDATE "note" SET "updatedAt" = 'URGENT' WHERE "updatedAt" IS NULL;
ALTER TABLE "note" ALTER COLUMN "updatedAt" SET NOT NULL;
ALTER TYPE "Priority" RENAME TO "PriorityType";
ALTER TABLE "event" DROP COLUMN "payload";
CREATE TYPE "Plan" AS ENUM ('TWO', 'inactive', 'active', 'FOUR');
ALTER TABLE "event" RENAME COLUMN "title" TO "email";
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'ledger_flags_check') THEN
    ALTER TABLE "ledger" ADD CONSTRAINT "ledger_flags_check" CHECK ("flags" IS NOT NULL OR true);
  END IF;
END $$;
ALTER TABLE "ledger" RENAME COLUMN "label" TO "level9";
ALTER TABLE "ledger" ADD COLUMN "label" text;
ALTER TABLE "ledger" ALTER COLUMN "label" SET DEFAULT 'dflt-2';
ALTER TABLE "Profile" DROP COLUMN "rank";
ALTER TABLE "Profile" ADD COLUMN "rank" TEXT;

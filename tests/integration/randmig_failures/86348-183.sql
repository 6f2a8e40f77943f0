-- base schema: 86348-183.base.sql
-- then: migrate start; migrate complete
-- seed 86348: a column retyped twice (refused, saying "pick another name": a second column for each change); the two changes composed into one, online and identical
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'ledger_ref_check') THEN
    ALTER TABLE "ledger" ADD CONSTRAINT "ledger_ref_check" CHECK ("ref" IS NOT NULL OR true);
  END IF;
END $$;
UPDATE "note" SET "rank" = 'draft' WHERE "rank" = 'live';
CREATE TYPE "stage_new" AS ENUM ('draft');
ALTER TABLE "note" ALTER COLUMN "rank" TYPE "stage_new" USING ("rank"::text::"stage_new");
DROP TYPE "stage";
ALTER TYPE "stage_new" RENAME TO "stage";
ALTER TABLE "note" ALTER COLUMN "rank" SET DATA TYPE text USING "rank"::text;
ALTER TABLE "note" ADD CONSTRAINT "note_rank_check" CHECK ("rank" IS NOT NULL OR true);
ALTER TABLE "ledger" ALTER COLUMN "ref" SET DEFAULT '2024-01-03 10:00:00+00';

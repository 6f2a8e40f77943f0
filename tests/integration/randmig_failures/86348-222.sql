-- base schema: 86348-222.base.sql
-- then: migrate start; migrate rollback
-- seed 86348: a CHECK on a column added under the name a rename frees (refused: its probe read the renamed column); online and identical
UPDATE "Comment" SET "weight" = 3.39 WHERE "weight" IS NULL;
ALTER TABLE "Comment" ALTER COLUMN "weight" SET NOT NULL;
ALTER TABLE "Comment" RENAME COLUMN "notes" TO "flags";
ALTER TABLE "Comment" ADD COLUMN "notes" text;
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'Comment_notes_check_4') THEN
    ALTER TABLE "Comment" ADD CONSTRAINT "Comment_notes_check_4" CHECK (length("notes") < 200);
  END IF;
END $$;
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'user_updatedAt_check') THEN
    ALTER TABLE "user" ADD CONSTRAINT "user_updatedAt_check" CHECK (jsonb_typeof("updatedAt") = 'object');
  END IF;
END $$;
CREATE TYPE "Plan" AS ENUM ('pending', 'ONE', 'active');
ALTER TABLE "Comment" ADD COLUMN "extra" "Plan";

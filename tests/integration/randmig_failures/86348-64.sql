-- base schema: 86348-64.base.sql
-- then: migrate start; migrate complete
-- seed 86348: a CHECK on a column added under the name a rename frees (refused: its probe read the renamed column); online and identical
CREATE TYPE "Kind" AS ENUM ('THREE', 'FOUR');
ALTER TABLE "event" ADD COLUMN "label5" "Role";
ALTER TABLE "Post" RENAME COLUMN "status" TO "slug";
ALTER TABLE "Post" ADD COLUMN "status" text;
ALTER TABLE "task" ALTER COLUMN "meta" SET DEFAULT 18;
ALTER TABLE "ledger" RENAME COLUMN "body" TO "createdAt";
ALTER TABLE "Post" RENAME COLUMN "slug" TO "updatedAt";
ALTER TABLE "Post" RENAME COLUMN "weight" TO "flag";
ALTER TABLE "Post" RENAME COLUMN "flag" TO "level2";
CREATE TYPE "Plan" AS ENUM ('pending', 'FOUR', 'THREE', 'TWO');
ALTER TABLE "ledger" ADD COLUMN "code" "Plan";
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'Post_status_check') THEN
    ALTER TABLE "Post" ADD CONSTRAINT "Post_status_check" CHECK (length("status") < 200);
  END IF;
END $$;

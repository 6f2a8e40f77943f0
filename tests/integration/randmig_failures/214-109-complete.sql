-- base schema: 214-109.base.sql
-- then: migrate start; migrate complete
-- seed 214's file 109 (refused before): an index renamed, then dropped under its new name: the drop takes the index under its old name at the contract, the rename folds away
ALTER TABLE "Profile" ALTER COLUMN "payload" DROP NOT NULL;
ALTER TABLE "order" ADD COLUMN "amount3" date;
ALTER INDEX "Post_amount_idx" RENAME TO "Post_amount_idx_r";
ALTER TABLE "Profile" DROP CONSTRAINT "Profile_payload_check";
ALTER TABLE "Profile" ADD CONSTRAINT "Profile_payload_check" CHECK ("payload" >= 0);
ALTER TABLE "order" ALTER COLUMN "amount3" SET DATA TYPE timestamptz;
DO $$ BEGIN
  CREATE TYPE "Status" AS ENUM ('THREE', 'pending', 'inactive', 'TWO');
EXCEPTION
  WHEN duplicate_object THEN null;
END $$;
ALTER TABLE "Profile" RENAME CONSTRAINT "Profile_payload_check" TO "Profile_payload_check_r";
DROP INDEX CONCURRENTLY "Post_amount_idx_r";

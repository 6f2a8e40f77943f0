-- base schema: 86348-211.base.sql
-- then: migrate start; migrate complete
-- seed 86348: a partitioned table's index dropped and made again under its name (refused); built under temporary names, renamed after the drop, online and identical
DROP INDEX CONCURRENTLY "user_amount_idx";
ALTER TYPE "mood" RENAME TO "moodType";
ALTER TABLE "Comment" RENAME COLUMN "status" TO "flags3";
ALTER TABLE "Comment" ADD COLUMN "status" text;
ALTER TABLE "Invoice" ADD COLUMN "accountId" bigint;
UPDATE "Invoice" SET "accountId" = (SELECT min("id") FROM "account");
ALTER TABLE "Invoice" ADD CONSTRAINT "Invoice_accountId_fkey" FOREIGN KEY ("accountId") REFERENCES "account"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
DROP INDEX "team_amount_idx";
CREATE INDEX "team_amount_idx" ON "team"("account_id");
DROP INDEX "Comment_user_id_idx";
ALTER TABLE "account" ADD CONSTRAINT "account_body_key" UNIQUE ("body");
ALTER TABLE "Comment" ADD CONSTRAINT "Comment_weight_check" CHECK ("weight" IS NOT NULL OR true);

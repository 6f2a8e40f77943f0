-- base schema: 90002-314.base.sql
-- then: migrate start; migrate complete
-- (sibling of 90002-314) SET NOT NULL, DROP NOT NULL, SET NOT NULL of one column, other statements between
UPDATE "item" SET "status" = 3.39 WHERE "status" IS NULL;
ALTER TABLE "item" ALTER COLUMN "status" SET NOT NULL;
ALTER TABLE "ledger" RENAME CONSTRAINT "ledger_parentId_fkey" TO "ledger_parentId_fkey_r";
ALTER TABLE "item" ALTER COLUMN "status" DROP NOT NULL;
ALTER TABLE "Post" ADD COLUMN "extra" text;
ALTER TABLE "item" ALTER COLUMN "status" SET NOT NULL;

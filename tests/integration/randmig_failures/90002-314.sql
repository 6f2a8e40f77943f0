-- base schema: 90002-314.base.sql
-- then: migrate start; migrate complete
-- seed 90002's file 315: a column filled and SET NOT NULL, another statement, then DROP NOT NULL: the plan read the column as the catalog had it (nullable) and skipped the DROP NOT NULL, so the contract's SET NOT NULL stayed
UPDATE "item" SET "status" = 3.39 WHERE "status" IS NULL;
ALTER TABLE "item" ALTER COLUMN "status" SET NOT NULL;
ALTER TABLE "ledger" RENAME CONSTRAINT "ledger_parentId_fkey" TO "ledger_parentId_fkey_r";
ALTER TABLE "item" ALTER COLUMN "status" DROP NOT NULL;

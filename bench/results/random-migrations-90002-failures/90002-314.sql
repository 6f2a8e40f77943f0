-- base schema: 90002-314.base.sql
-- then: migrate start; migrate complete
-- failure: schema differs: -    status numeric(10,2) | +    status numeric(10,2) NOT NULL
UPDATE "item" SET "status" = 3.39 WHERE "status" IS NULL;
ALTER TABLE "item" ALTER COLUMN "status" SET NOT NULL;
ALTER TABLE "ledger" RENAME CONSTRAINT "ledger_parentId_fkey" TO "ledger_parentId_fkey_r";
ALTER TABLE "item" ALTER COLUMN "status" DROP NOT NULL;

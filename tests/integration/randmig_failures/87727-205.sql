-- base schema: 87727-205.base.sql
-- then: migrate start; migrate complete
-- failure: start exit 1, changed: True: operations[N]: ERROR:  check constraint NAME of relation NAME is violated by some row
ALTER TABLE "account" ALTER COLUMN "amount" DROP NOT NULL;
UPDATE "account" SET "meta" = 'ADMIN' WHERE "meta" IS NULL;
ALTER TABLE "account" ALTER COLUMN "meta" SET NOT NULL;

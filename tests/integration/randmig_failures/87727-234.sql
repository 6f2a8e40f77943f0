-- base schema: 87727-234.base.sql
-- then: migrate start; migrate complete
-- failure: start exit 1, changed: True: operations[N]: ERROR:  check constraint NAME of relation NAME is violated by some row
ALTER TABLE "account" ALTER COLUMN "label" DROP NOT NULL;
UPDATE "account" SET "flags" = 'ADMIN' WHERE "flags" IS NULL;
ALTER TABLE "account" ALTER COLUMN "flags" SET NOT NULL;

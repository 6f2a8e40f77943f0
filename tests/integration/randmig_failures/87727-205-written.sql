-- base schema: 87727-205-written.base.sql
-- then: migrate start; migrate complete
-- failure: (sibling of 87727-205) a fill that also writes NULL into the column whose NOT NULL the file drops (so it runs at complete), then a SET NOT NULL on what it filled: refused before any DDL
ALTER TABLE "account" ALTER COLUMN "amount" DROP NOT NULL;
UPDATE "account" SET "amount" = NULL, "meta" = 'ADMIN' WHERE "meta" IS NULL;
ALTER TABLE "account" ALTER COLUMN "meta" SET NOT NULL;

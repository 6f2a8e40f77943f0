-- base schema: 87727-205-check.base.sql
-- then: migrate start; migrate complete
-- failure: (sibling of 87727-205) a fill, beside a DROP NOT NULL of another column, then a CHECK on what it filled
ALTER TABLE "account" ALTER COLUMN "amount" DROP NOT NULL;
UPDATE "account" SET "meta" = 'ADMIN' WHERE "meta" IS NULL;
ALTER TABLE "account" ADD CONSTRAINT "account_meta_check" CHECK ("meta" IS NOT NULL);

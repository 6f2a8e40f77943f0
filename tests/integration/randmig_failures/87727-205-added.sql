-- base schema: 87727-205-added.base.sql
-- then: migrate start; migrate complete
-- failure: (sibling of 87727-205) a fill of a column the file adds, beside a DROP NOT NULL of another, then its SET NOT NULL
ALTER TABLE "account" ALTER COLUMN "amount" DROP NOT NULL;
ALTER TABLE "account" ADD COLUMN "note" text;
UPDATE "account" SET "note" = 'none' WHERE "note" IS NULL;
ALTER TABLE "account" ALTER COLUMN "note" SET NOT NULL;

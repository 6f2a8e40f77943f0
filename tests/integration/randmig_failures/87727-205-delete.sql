-- base schema: 87727-205-delete.base.sql
-- then: migrate start; migrate complete
-- failure: (sibling of 87727-205) a DELETE of the rows a SET NOT NULL would meet NULL in, beside a DROP NOT NULL of another column
ALTER TABLE "Profile" ALTER COLUMN "slug" DROP NOT NULL;
DELETE FROM "Profile" WHERE "score" IS NULL;
ALTER TABLE "Profile" ALTER COLUMN "score" SET NOT NULL;

-- base schema: 214-261.base.sql
-- then: migrate start; migrate complete
-- a column renamed twice, then retyped right after: the retype joins the last rename
ALTER TABLE "tag" RENAME COLUMN "ref" TO "code";
ALTER TABLE "tag" RENAME COLUMN "code" TO "updatedAt";
ALTER TABLE "tag" ALTER COLUMN "updatedAt" SET DATA TYPE text USING "updatedAt"::text;

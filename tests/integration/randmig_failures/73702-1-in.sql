-- base schema: 73702-1-in.base.sql
-- then: migrate start; migrate complete
ALTER TABLE "tag" RENAME TO "label";
ALTER TABLE "team" ALTER COLUMN "id" TYPE bigint;

-- base schema: 73143-88.base.sql
-- then: migrate start; migrate rollback
-- a sibling of 73143-88-retyped, rolled back
ALTER TABLE "tag" RENAME COLUMN "email" TO "flags8";
ALTER TABLE "tag" ALTER COLUMN "flags8" SET DATA TYPE text;
ALTER TABLE "tag" ADD COLUMN "email" integer;

-- base schema: 61207-0.base.sql
-- then: migrate start; migrate complete
-- a sibling of 61207-0: a retype of an added column with a USING that is a cast of it
ALTER TABLE "tag" ADD COLUMN "note7" text;
ALTER TABLE "tag" ALTER COLUMN "note7" SET DATA TYPE integer USING "note7"::integer;

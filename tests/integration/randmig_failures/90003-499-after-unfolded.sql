-- base schema: 90003-13.base.sql
-- then: migrate start; migrate complete
-- a sibling of 90003-499: a fill the converter does not fold (FROM), then one it could: folded, the backfill after the expand wrote over the first one's rows (rows differed); a later UPDATE of a column whose earlier fill was not folded is not folded either
ALTER TABLE "note" ADD COLUMN "c" integer;
UPDATE "note" SET "c" = 1 FROM (SELECT 1 AS one) x WHERE x.one = 1;
UPDATE "note" SET "c" = 2 WHERE "id" < 3;

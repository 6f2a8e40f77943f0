-- base schema: 90003-13.base.sql
-- then: migrate start; migrate complete
-- a sibling of 90003-499-after-unfolded: two columns each filled by an UPDATE the converter does not fold, then a foldable fill of the first: the converter remembered only the last unfolded column, folded it, and the backfill wrote over the first fill's rows (rows differed); every unfolded column is remembered now
ALTER TABLE "note" ADD COLUMN "c" integer;
ALTER TABLE "note" ADD COLUMN "d" integer;
UPDATE "note" SET "c" = 1 FROM (SELECT 1 AS one) x WHERE x.one = 1;
UPDATE "note" SET "d" = 1 FROM (SELECT 1 AS one) x WHERE x.one = 1;
UPDATE "note" SET "c" = 2 WHERE "id" < 3;

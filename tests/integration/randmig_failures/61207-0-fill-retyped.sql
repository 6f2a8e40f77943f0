-- base schema: 61207-0.base.sql
-- then: migrate start; migrate complete
-- a sibling of 61207-0 (its guard, which failed on the build before: rows differed): an UPDATE filling the added column between the ADD and the retype: not folded into the ADD; the fill and the retype ran in one backfill UPDATE, whose retype read the column as before the fill (NULL); an earlier piece of the batch is read as the value it gives
ALTER TABLE "tag" ADD COLUMN "note7" text;
UPDATE "tag" SET "note7" = '12';
ALTER TABLE "tag" ALTER COLUMN "note7" SET DATA TYPE integer USING "note7"::integer;

-- base schema: 90003-13.base.sql
-- then: migrate start; migrate complete
-- a sibling of 90003-499: a fill reading another column of its table, then an UPDATE of that column: folded, the backfill read the new values (rows differed); not folded now
ALTER TABLE "note" ADD COLUMN "c" boolean;
UPDATE "note" SET "c" = NOT "updatedAt";
UPDATE "note" SET "updatedAt" = true WHERE "id" < 5;

-- base schema: 90003-13.base.sql
-- then: migrate start; migrate complete
-- a sibling of 90003-499: a fill of every row, then an INSERT into its table: folded, the backfill filled the inserted row too (rows differed); not folded now
ALTER TABLE "note" ADD COLUMN "c" integer;
UPDATE "note" SET "c" = 7;
INSERT INTO "note" ("amount") VALUES ('2020-01-01');

-- base schema: 90003-13.base.sql
-- then: migrate start; migrate complete
-- a guard beside 90003-499: a fill reading only its own row, then a DELETE of its table: still folded (deleting rows changes no other row's value)
ALTER TABLE "note" ADD COLUMN "c" integer;
UPDATE "note" SET "c" = "id" * 2;
DELETE FROM "note" WHERE "id" < 4;

-- base schema: 87727-216.base.sql
-- then: migrate start; migrate complete
-- the class of 87727-216 with a later constraint of the table: it is validated before complete, where the INSERT waits, so it would not meet the INSERT's rows as offline; refused before any DDL
ALTER TABLE "item" ALTER COLUMN "rank" DROP DEFAULT;
INSERT INTO "item" ("kind", "createdAt", "meta") SELECT "kind", "createdAt", "meta" FROM "item" WHERE "id" <= 3;
ALTER TABLE "item" ADD CONSTRAINT "item_createdAt_check" CHECK ("createdAt" >= '2024-01-01');

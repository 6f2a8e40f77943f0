-- base schema: 87727-216.base.sql
-- then: migrate start; migrate rollback
-- the class of 87727-216, rolled back: the INSERT waits for complete, so the rollback leaves the rows as they were
ALTER TABLE "item" ALTER COLUMN "rank" DROP DEFAULT;
INSERT INTO "item" ("kind", "createdAt", "meta") SELECT "kind", "createdAt", "meta" FROM "item" WHERE "id" <= 3;

-- base schema: 87727-216.base.sql
-- then: migrate start; migrate complete
-- the class of 87727-216 with a later statement building on the table: the INSERT must wait for complete, after the index is built, so it is refused before any DDL
ALTER TABLE "item" ALTER COLUMN "rank" DROP DEFAULT;
INSERT INTO "item" ("kind", "createdAt", "meta") SELECT "kind", "createdAt", "meta" FROM "item" WHERE "id" <= 3;
CREATE INDEX "item_createdAt_idx" ON "item" ("createdAt");

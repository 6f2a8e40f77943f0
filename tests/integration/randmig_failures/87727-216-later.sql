-- base schema: 87727-216.base.sql
-- then: migrate start; migrate complete
-- the class of 87727-216 with a later plain index of the table: the INSERT waits for complete, after the index is built, which the INSERT's rows then enter as any write does
ALTER TABLE "item" ALTER COLUMN "rank" DROP DEFAULT;
INSERT INTO "item" ("kind", "createdAt", "meta") SELECT "kind", "createdAt", "meta" FROM "item" WHERE "id" <= 3;
CREATE INDEX "item_createdAt_idx" ON "item" ("createdAt");

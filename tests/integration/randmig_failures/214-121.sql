-- base schema: 214-121.base.sql
-- then: migrate start; migrate rollback
-- failure: rollback rows differ: table "Comment": 21 rows vs 24
ALTER TABLE "Comment" ADD COLUMN "notes9" date;
INSERT INTO "Comment" ("createdAt", "status", "parentId", "notes9") SELECT "createdAt", "status", "parentId", "notes9" FROM "Comment" WHERE "id" <= 3;

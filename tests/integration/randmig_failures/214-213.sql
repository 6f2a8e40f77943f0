-- base schema: 214-213.base.sql
-- then: migrate start; migrate rollback
-- failure: rollback rows differ: table account: 41 rows vs 42
DELETE FROM "account" WHERE "id" % 7 = 3;
INSERT INTO "account" ("ref", "createdAt") SELECT "ref", "createdAt" FROM "account" WHERE "id" <= 3;

-- base schema: 214-213.base.sql
-- then: migrate start; migrate complete
-- a batched UPDATE reading another table, then rows added to that table: the UPDATE counts the rows before them
UPDATE "tag" SET "flags" = 0 WHERE "flags" > (SELECT count(*) FROM "account");
INSERT INTO "account" ("ref", "createdAt") SELECT "ref", "createdAt" FROM "account" WHERE "id" <= 30;

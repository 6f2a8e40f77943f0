-- base schema: 214-213.base.sql
-- then: migrate start; migrate complete
-- a batched DELETE, then another table filled from what it left: the rows it deleted are not copied
DELETE FROM "account" WHERE "id" % 7 = 3;
INSERT INTO "tag" ("amount", "flags") SELECT coalesce("createdAt", '2024-01-01 00:00:00+00'), "id" FROM "account";

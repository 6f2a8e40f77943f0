-- base schema: 214-213.base.sql
-- then: migrate start; migrate complete
-- a batched UPDATE, then an INSERT ... SELECT of the rows it wrote: the INSERT copies them after the UPDATE
UPDATE "account" SET "createdAt" = '2020-01-01 00:00:00+00' WHERE "id" % 7 = 3;
INSERT INTO "account" ("ref", "createdAt") SELECT "ref", "createdAt" FROM "account" WHERE "id" % 7 = 3;

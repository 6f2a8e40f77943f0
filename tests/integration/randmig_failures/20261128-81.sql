-- base schema: 20261128-81.base.sql
-- then: migrate start; migrate complete
-- failure: rows differ: table account: 36 rows vs 36
DELETE FROM "item" WHERE "id" % 7 = 3;

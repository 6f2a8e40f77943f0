-- base schema: 20261128-75.base.sql
-- then: migrate start; migrate rollback
-- failure: rollback rows differ: table ledger: 29 rows vs 29
DELETE FROM "ledger" WHERE "id" % 7 = 3;

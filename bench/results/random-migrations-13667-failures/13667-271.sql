-- base schema: 13667-271.base.sql
-- then: migrate start; migrate complete
-- failure: start exit 1, changed: True: backfill batch on NAME.NAME (its first N rows) failed: ERROR:  new row for relation NAME violates check constraint NAME
DELETE FROM "event" WHERE "id" % 7 = 3;
ALTER TABLE "item" ALTER COLUMN "meta" SET DATA TYPE varchar(40)[];

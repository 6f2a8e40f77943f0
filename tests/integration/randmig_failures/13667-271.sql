-- base schema: 13667-271.base.sql
-- then: migrate start; migrate complete
-- seed 13667's file 271: a batched DELETE whose ON DELETE SET NULL updates rows of a table whose column is retyped: the tandem trigger skipped the cascade (the backfill session), leaving the new column NULL against its NOT NULL check
DELETE FROM "event" WHERE "id" % 7 = 3;
ALTER TABLE "item" ALTER COLUMN "meta" SET DATA TYPE varchar(40)[];

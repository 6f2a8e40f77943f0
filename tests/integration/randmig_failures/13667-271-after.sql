-- base schema: 13667-271.base.sql
-- then: migrate start; migrate complete
-- (sibling of 13667-271) the retype first, then the batched DELETE whose ON DELETE SET NULL reaches the retyped table
ALTER TABLE "item" ALTER COLUMN "meta" SET DATA TYPE varchar(40)[];
DELETE FROM "event" WHERE "id" % 7 = 3;

-- base schema: 13667-271.base.sql
-- then: migrate start; migrate complete
-- (sibling of 13667-271) a batched DELETE whose ON DELETE SET NULL reaches another table, two of whose columns the file then retypes
DELETE FROM "event" WHERE "id" % 3 = 0;
ALTER TABLE "tag" ALTER COLUMN "label" SET DATA TYPE timestamp;
ALTER TABLE "tag" ALTER COLUMN "notes" SET DATA TYPE json;

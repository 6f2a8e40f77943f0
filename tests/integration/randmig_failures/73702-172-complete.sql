-- base schema: 73702-172-complete.base.sql
-- then: migrate start; migrate complete
ALTER TABLE "note" ALTER COLUMN "body" SET DATA TYPE text USING "body"::text;
INSERT INTO "note" ("body", "updatedAt") VALUES ('hello', 5);
UPDATE "note" SET "body" = 'upd-2' WHERE "body" = '7';

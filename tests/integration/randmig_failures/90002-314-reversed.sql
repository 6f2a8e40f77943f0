-- base schema: 13667-271.base.sql
-- then: migrate start; migrate complete
-- (sibling of 90002-314) DROP NOT NULL of a NOT NULL column, another statement, then SET NOT NULL: it ends NOT NULL, as offline
ALTER TABLE "event" ALTER COLUMN "level" DROP NOT NULL;
ALTER TABLE "tag" ADD COLUMN "extra2" text;
ALTER TABLE "event" ALTER COLUMN "level" SET NOT NULL;

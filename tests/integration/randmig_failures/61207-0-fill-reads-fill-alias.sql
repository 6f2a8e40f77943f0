-- base schema: 61207-0.base.sql
-- then: migrate start; migrate complete
-- a sibling of 61207-0-fill-reads-fill: the second fill reads the first through the UPDATE's alias (the up names it by the table's name)
ALTER TABLE "tag" ADD COLUMN "note7" text;
UPDATE "tag" SET "note7" = 'n-' || "status";
ALTER TABLE "tag" ADD COLUMN "note8" text;
UPDATE "tag" AS g SET "note8" = g."note7" || '-8';

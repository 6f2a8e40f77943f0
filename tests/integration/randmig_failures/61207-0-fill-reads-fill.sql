-- base schema: 61207-0.base.sql
-- then: migrate start; migrate complete
-- a sibling of 61207-0-fill-retyped: two added columns each filled, the second from the first: both fills folded into one backfill UPDATE, where the second read the first as NULL (rows differed)
ALTER TABLE "tag" ADD COLUMN "note7" text;
UPDATE "tag" SET "note7" = 'n-' || "status";
ALTER TABLE "tag" ADD COLUMN "note8" text;
UPDATE "tag" SET "note8" = "note7" || '-8';

-- base schema: 58841-295.base.sql
-- then: migrate start; migrate complete
-- a sibling of 58841-295: a CHECK of another added column reading the added column is refused before any DDL
ALTER TABLE "team" RENAME COLUMN "body" TO "level";
ALTER TABLE "team" ADD COLUMN "body" text;
ALTER TABLE "team" ADD COLUMN "body_len" integer CHECK ("body" IS NOT NULL OR "body_len" IS NULL);

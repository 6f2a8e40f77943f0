-- base schema: 58841-295.base.sql
-- then: migrate start; migrate complete
-- a sibling of 58841-295: an index key written as SQL on the added column is refused before any DDL
ALTER TABLE "team" RENAME COLUMN "body" TO "level";
ALTER TABLE "team" ADD COLUMN "body" text;
CREATE INDEX "team_lower_body_idx" ON "team" (lower("body"));

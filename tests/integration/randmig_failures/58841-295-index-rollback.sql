-- base schema: 58841-295.base.sql
-- then: migrate start; migrate rollback
-- a sibling of 58841-295, rolled back: an index with a predicate, a UNIQUE key and a foreign key on the added column, made on its second column
ALTER TABLE "team" RENAME COLUMN "body" TO "level";
ALTER TABLE "team" ADD COLUMN "body" text;
CREATE INDEX "team_body_idx" ON "team" ("body") INCLUDE ("ref") WHERE "body" IS NOT NULL;
ALTER TABLE "team" ADD CONSTRAINT "team_body_key" UNIQUE ("body");
ALTER TABLE "note" ADD COLUMN "team_body" text;
ALTER TABLE "note" ADD CONSTRAINT "note_team_body_fkey" FOREIGN KEY ("team_body") REFERENCES "team" ("body");

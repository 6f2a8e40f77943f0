-- base schema: 87727-202-index.base.sql
-- then: migrate start; migrate rollback
-- failure: (sibling of 87727-202) a function made after the table that an index of it then uses
CREATE TABLE "itemLog" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "score" TEXT,
    CONSTRAINT "itemLog_pkey" PRIMARY KEY ("id")
);
ALTER TABLE "itemLog" ADD COLUMN "slug" TEXT;
CREATE FUNCTION "item_key"(text) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT lower($1)';
CREATE INDEX "itemLog_slug_key_idx" ON "itemLog" ("item_key"("slug"));

-- base schema: 90003-519.base.sql
-- then: migrate start; migrate complete
-- a sibling of 90003-519: an array of the type, NOT NULL with a default (failed the same way)
CREATE TYPE "stage_new" AS ENUM ('draft', 'done');
DROP TYPE "stage";
ALTER TYPE "stage_new" RENAME TO "stage";
ALTER TABLE "Profile" ADD COLUMN "amount8" "stage"[] NOT NULL DEFAULT '{}';

-- base schema: 90003-519.base.sql
-- then: migrate start; migrate complete
-- a sibling of 90003-519: a CREATE TABLE with columns of the type and of an array of it (failed the same way)
CREATE TYPE "stage_new" AS ENUM ('draft');
DROP TYPE "stage";
ALTER TYPE "stage_new" RENAME TO "stage";
CREATE TABLE "audit" ("id" serial PRIMARY KEY, "st" "stage", "sts" "stage"[]);

-- base schema: 90003-519.base.sql
-- then: migrate start; migrate complete
-- a sibling of 90003-519: the type named in a cast of the default as well, which would reach the old type at expand: refused before DDL (failed after DDL before)
CREATE TYPE "stage_new" AS ENUM ('draft');
DROP TYPE "stage";
ALTER TYPE "stage_new" RENAME TO "stage";
ALTER TABLE "Profile" ADD COLUMN "amount8" "stage" DEFAULT 'draft'::"stage";

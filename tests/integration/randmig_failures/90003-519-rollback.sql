-- base schema: 90003-519.base.sql
-- then: migrate start; migrate rollback
-- a guard beside 90003-519: rolled back
CREATE TYPE "stage_new" AS ENUM ('draft');
DROP TYPE "stage";
ALTER TYPE "stage_new" RENAME TO "stage";
ALTER TABLE "Profile" ADD COLUMN "amount8" "stage";

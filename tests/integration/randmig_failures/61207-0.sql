-- base schema: 61207-0.base.sql
-- then: migrate start; migrate complete
-- seed 61207's file 1 (refused, not needed): ADD COLUMN rank text under the name a RENAME COLUMN frees, then other tables' changes, then rank to varchar(200): refused, as a change of a column added under a freed name; a retype of a column the file adds, with nothing between naming its table or the column, makes the column with the new type
ALTER TABLE "tag" RENAME COLUMN "rank" TO "weight";
ALTER TABLE "tag" ADD COLUMN "rank" text;
CREATE TYPE "level" AS ENUM ('TWO', 'ONE', 'THREE', 'pending');
CREATE TYPE "Plan" AS ENUM ('pending', 'active');
ALTER TABLE "Invoice" RENAME COLUMN "amount" TO "score";
ALTER TABLE "ledger" DROP CONSTRAINT "ledger_team_id_fkey";
ALTER TABLE "user" RENAME TO "teams";
ALTER TABLE "tag" ALTER COLUMN "rank" SET DATA TYPE varchar(200);
ALTER TABLE "Invoice" DROP COLUMN "slug";

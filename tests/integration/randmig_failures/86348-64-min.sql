-- base schema: 86348-64.base.sql
-- then: migrate start; migrate complete
-- seed 86348: a CHECK on a column added under the name a rename frees (refused: its probe read the renamed bigint column, "function length(bigint) does not exist"); the probe reads the added column from there on, as offline
ALTER TABLE "Post" RENAME COLUMN "status" TO "slug";
ALTER TABLE "Post" ADD COLUMN "status" text;
ALTER TABLE "Post" ADD CONSTRAINT "Post_status_check" CHECK (length("status") < 200);

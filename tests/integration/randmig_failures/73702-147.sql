-- base schema: 73702-147.base.sql
-- then: migrate start; migrate complete
-- failure: start exit 1, changed: True: backfill batch on NAME.NAME (its first N rows) failed: ERROR:  new row for relation NAME violates check constraint NAME
ALTER TABLE "Post" RENAME COLUMN "task_id" TO "level";
ALTER TABLE "Post" RENAME COLUMN "level" TO "label3";
ALTER TABLE "Post" ALTER COLUMN "label3" SET NOT NULL;

-- base schema: 90011-8.base.sql
-- then: migrate start; migrate complete
-- seed 90011's file 9 (shortened): a DELETE after a retype of a column of its table that it does not read waited for complete, and the DROP INDEX after it was refused; it runs where it stands now
ALTER TABLE "Comment" ALTER COLUMN "payload" SET DATA TYPE text USING "payload"::text;
DELETE FROM "Comment" WHERE "id" % 7 = 3;
ALTER TABLE "Comment" ADD COLUMN "email5" integer[];
DROP INDEX "Comment_session_id_idx";

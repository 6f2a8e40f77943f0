-- base schema: 86348-169.base.sql
-- then: migrate start; migrate complete
-- seed 86348: a foreign key on a partitioned table (refused: Postgres cannot add one NOT VALID there); each partition's added NOT VALID, validated and attached by the table's, online and identical
ALTER TABLE "memo" ADD COLUMN "memoId" integer;
UPDATE "memo" SET "memoId" = (SELECT min("id") FROM "memo");
ALTER TABLE "memo" ADD CONSTRAINT "memo_memoId_fkey" FOREIGN KEY ("memoId") REFERENCES "memo"("id") ON DELETE SET NULL ON UPDATE CASCADE;
ALTER TABLE "Post" DROP CONSTRAINT "Post_event_id_fkey";
ALTER TABLE "Post" ADD CONSTRAINT "Post_event_id_fkey" FOREIGN KEY ("event_id") REFERENCES "event"("id") ON DELETE SET NULL ON UPDATE CASCADE;
ALTER TYPE "stage" ADD VALUE 'NEW' BEFORE 'draft';
ALTER TABLE "team" DROP CONSTRAINT "team_memo_id_fkey";
ALTER TABLE "order" RENAME COLUMN "comment_id" TO "ref9";
ALTER TABLE "order" ADD COLUMN "comment_id" text;

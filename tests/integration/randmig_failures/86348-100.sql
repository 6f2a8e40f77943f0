-- base schema: 86348-100.base.sql
-- then: migrate start; migrate rollback
-- seed 86348: a foreign key on a partitioned table (refused: Postgres cannot add one NOT VALID there); each partition's added NOT VALID, validated and attached by the table's, online and identical
ALTER TABLE "account" RENAME CONSTRAINT "account_memo_id_fkey" TO "account_memo_id_fkey_r";
DELETE FROM "task" WHERE "id" % 7 = 3;
ALTER TYPE "Priority" RENAME TO "PriorityType";
ALTER TABLE "account" DROP CONSTRAINT "account_memo_id_fkey_r";
ALTER TABLE "account" ADD CONSTRAINT "account_memo_id_fkey_r" FOREIGN KEY ("memo_id") REFERENCES "memo"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER INDEX "task_parentId_idx" RENAME TO "task_parentId_idx_r";
ALTER TYPE "PriorityType" ADD VALUE 'ARCHIVED';
ALTER TABLE "task" RENAME TO "CommentEntry";
ALTER TABLE "CommentEntry" RENAME CONSTRAINT "task_pkey" TO "CommentEntry_pkey";
ALTER TABLE "CommentEntry" RENAME CONSTRAINT "task_memo_id_fkey" TO "CommentEntry_memo_id_fkey";
ALTER TABLE "CommentEntry" RENAME CONSTRAINT "task_parentId_fkey" TO "CommentEntry_parentId_fkey";
ALTER INDEX "task_parentId_idx_r" RENAME TO "CommentEntry_parentId_idx_r";

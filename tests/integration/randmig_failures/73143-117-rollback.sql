-- base schema: 73143-117.base.sql
-- then: migrate start; migrate rollback
-- a sibling of 73143-117, rolled back
DROP INDEX "memo_task_id_idx";
CREATE INDEX "memo_task_id_idx" ON "memo"("ref");
DROP TABLE "memo";

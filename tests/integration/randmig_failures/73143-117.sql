-- base schema: 73143-117.base.sql
-- then: migrate start; migrate complete
-- seed 73143's file 118: DROP INDEX x, CREATE INDEX x (built under another name, renamed after the contract), then DROP TABLE of its table: the rename after the contract found no index, and complete exited 1 after the contract; the rename after the contract is IF EXISTS, as the drops there are
DROP INDEX "memo_task_id_idx";
CREATE INDEX "memo_task_id_idx" ON "memo"("ref");
DROP TABLE "memo";

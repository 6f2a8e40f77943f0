-- base schema: 73143-117.base.sql
-- then: migrate start; migrate complete
-- a sibling of 73143-117: the index's column dropped below it, which takes the index at the contract
DROP INDEX "memo_task_id_idx";
CREATE INDEX "memo_task_id_idx" ON "memo"("ref");
ALTER TABLE "memo" DROP COLUMN "ref";

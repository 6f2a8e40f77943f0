-- base schema: 73143-117.base.sql
-- then: migrate start; migrate complete
-- failure: complete exit 1: N-N-N N:N:N.N UTC ERROR migration r73143_117 is complete but its step after the contract (ALTER INDEX NAME.NAME RENAME TO NAME) failed and is not run again: ope
DROP INDEX "memo_task_id_idx";
CREATE INDEX "memo_task_id_idx" ON "memo"("ref");
DROP TABLE "memo";

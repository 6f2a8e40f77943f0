-- base schema: 90003-20.base.sql
-- then: migrate start; migrate complete
-- a sibling of 90003-20, completed
ALTER TYPE "stage" RENAME TO "stageType";
ALTER TABLE "order" RENAME COLUMN "session_id" TO "flag";
ALTER TABLE "order" ADD COLUMN "session_id" text;
ALTER TABLE "Comment" RENAME CONSTRAINT "Comment_task_id_fkey" TO "Comment_task_id_fkey_r";
ALTER TABLE "Session" DROP COLUMN "code";
ALTER TABLE "Session" ADD COLUMN "code" TEXT;
DROP TABLE "Comment";
ALTER TABLE "Session" ALTER COLUMN "code" SET DATA TYPE varchar(200);
CREATE INDEX "Session_code_idx" ON "Session"("code");

-- base schema: 73143-12.base.sql
-- then: migrate start; migrate rollback
-- seed 73143's file 13 (refused, not needed): a table renamed (twice), then a fill of another table reading it by its new name: the fill was tried before the expand, where the name does not exist yet
ALTER TABLE "Session" ALTER COLUMN "email" SET DATA TYPE double precision USING "email"::double precision;
ALTER TYPE "Role" RENAME TO "RoleType";
ALTER TABLE "ledger" RENAME TO "users";
ALTER TABLE "users" RENAME TO "users2";
ALTER TABLE "task" ADD COLUMN "taskId" bigint;
ALTER TABLE "task" ADD CONSTRAINT "task_taskId_fkey" FOREIGN KEY ("taskId") REFERENCES "task"("id") ON DELETE SET NULL ON UPDATE CASCADE;
ALTER TABLE "Session" RENAME CONSTRAINT "Session_kind_check" TO "Session_kind_check_r";
ALTER TABLE "task" ADD COLUMN "users2Id" integer;
UPDATE "task" SET "users2Id" = (SELECT min("id") FROM "users2");
ALTER TABLE "task" ADD CONSTRAINT "task_users2Id_fkey" FOREIGN KEY ("users2Id") REFERENCES "users2"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

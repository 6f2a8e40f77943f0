-- base schema: 73143-158.base.sql
-- then: migrate start; migrate rollback
-- seed 73143's file 159 (refused, not needed): RENAME CONSTRAINT of a unique key, then CREATE UNIQUE INDEX under the name it frees: refused as a name taken; the index is built under another name and takes its own after the contract renames the constraint
CREATE TYPE "Status" AS ENUM ('active', 'ONE', 'pending');
DROP TABLE "Post";
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'user_parentId_check') THEN
    ALTER TABLE "user" ADD CONSTRAINT "user_parentId_check" CHECK ("parentId" >= 0);
  END IF;
END $$;
DROP INDEX "Session_flags_lower_idx";
ALTER TABLE "user" RENAME CONSTRAINT "user_code_key" TO "user_code_key_r";
CREATE UNIQUE INDEX "user_code_key" ON "user"("code");
ALTER TABLE "user" RENAME TO "ledgerRecord";
CREATE INDEX "ledgerRecord_level_idx" ON "ledgerRecord"("level", "parentId");

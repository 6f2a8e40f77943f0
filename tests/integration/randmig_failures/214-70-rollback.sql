-- base schema: 214-70.base.sql
-- then: migrate start; migrate rollback
-- seed 214's file 70 (refused before): a table renamed before its column is retyped (the old type read under the name before the file), renamed twice (the plan follows both renames back)
ALTER TABLE "event" RENAME COLUMN "parentId" TO "note2";
ALTER TABLE "Post" RENAME TO "memoEntry";
ALTER TABLE "memoEntry" RENAME TO "memoEntry2";
DO $$ BEGIN
  CREATE TYPE "Kind" AS ENUM ('pending', 'TWO');
EXCEPTION
  WHEN duplicate_object THEN null;
END $$;
DROP INDEX "event_parentId_idx";
ALTER TABLE "event" RENAME TO "taskEntry";
ALTER TABLE "taskEntry" RENAME CONSTRAINT "event_pkey" TO "taskEntry_pkey";
ALTER TABLE "taskEntry" RENAME CONSTRAINT "event_parentId_fkey" TO "taskEntry_parentId_fkey";
ALTER TABLE "taskEntry" ALTER COLUMN "code" SET DATA TYPE date USING "code"::date;
ALTER TABLE "memoEntry2" RENAME COLUMN "createdAt" TO "body6";

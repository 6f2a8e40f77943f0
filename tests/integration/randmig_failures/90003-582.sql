-- base schema: 90003-582.base.sql
-- then: migrate start; migrate complete
-- seed 90003's file 583 (shortened): a DO block making the type "Status" after a column renamed to "status" was refused; names compare exactly, and a column's is no type's
ALTER TABLE "memo" RENAME COLUMN "parentId" TO "status";
DO $$ BEGIN
  CREATE TYPE "Status" AS ENUM ('THREE', 'ONE', 'active');
EXCEPTION
  WHEN duplicate_object THEN null;
END $$;

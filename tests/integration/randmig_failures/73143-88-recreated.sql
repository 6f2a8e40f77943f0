-- base schema: 73143-88.base.sql
-- then: migrate start; migrate complete
-- seed 73143's file 89, a sibling: a column renamed, its old name added, then the renamed one dropped and added again (a second column for the rename): the add was refused as a name taken
ALTER TABLE "tag" RENAME COLUMN "email" TO "flags8";
ALTER TABLE "tag" ADD COLUMN "email" text;
ALTER TABLE "tag" DROP COLUMN "flags8";
ALTER TABLE "tag" ADD COLUMN "flags8" TEXT;

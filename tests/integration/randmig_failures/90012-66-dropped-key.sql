-- base schema: 90012-66.base.sql
-- then: migrate start; migrate complete
-- a sibling of 90012-66: a foreign key renamed, dropped under its new name, then its column retyped
ALTER TABLE "Comment" RENAME CONSTRAINT "Comment_parentId_fkey" TO "Comment_parent_fk";
ALTER TABLE "Comment" DROP CONSTRAINT "Comment_parent_fk";
ALTER TABLE "Comment" ALTER COLUMN "parentId" TYPE numeric(20,0);

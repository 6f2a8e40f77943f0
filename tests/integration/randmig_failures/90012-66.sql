-- base schema: 90012-66.base.sql
-- then: migrate start; migrate complete
-- seed 90012's file 66: RENAME CONSTRAINT of a foreign key, then its column renamed and changed, which the plan carries to a second column: the copy of the key took the name from before the rename at the contract (schemas differed); a key, CHECK or unique constraint carried to a second column takes the name renames above gave it
ALTER TABLE "Comment" RENAME CONSTRAINT "Comment_parentId_fkey" TO "Comment_parentId_fkey_r";
ALTER TABLE "Comment" RENAME COLUMN "parentId" TO "createdAt4";
ALTER TABLE "Comment" RENAME COLUMN "createdAt4" TO "notes5";
ALTER TABLE "Comment" ALTER COLUMN "notes5" DROP DEFAULT;

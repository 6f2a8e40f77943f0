-- base schema: 90012-66.base.sql
-- then: migrate start; migrate complete
-- failure: schema differs: -    ADD CONSTRAINT "Comment_parentId_fkey_r" FOREIGN KEY (notes5) REFERENCES public."Comment"(id) ON DELETE SET NULL; | +    ADD CONSTRAINT "Comment_parentId_fkey" FOREIGN KEY (notes5) REFERENCES public."Comment"(id) ON DELETE SET NULL;
ALTER TABLE "Comment" RENAME CONSTRAINT "Comment_parentId_fkey" TO "Comment_parentId_fkey_r";
ALTER TABLE "Comment" RENAME COLUMN "parentId" TO "createdAt4";
ALTER TABLE "Comment" RENAME COLUMN "createdAt4" TO "notes5";
ALTER TABLE "Comment" ALTER COLUMN "notes5" DROP DEFAULT;

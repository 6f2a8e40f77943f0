-- base schema: 90012-66.base.sql
-- then: migrate start; migrate complete
-- a sibling of 90012-66: a foreign key of another table renamed, then the column it points at retyped
ALTER TABLE "Invoice" RENAME CONSTRAINT "Invoice_comment_id_fkey" TO "Invoice_comment_fk";
ALTER TABLE "Comment" ALTER COLUMN "id" TYPE integer;

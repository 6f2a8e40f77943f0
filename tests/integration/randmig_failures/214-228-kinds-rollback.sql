-- base schema: 214-228-kinds.base.sql
-- then: migrate start; migrate rollback
-- the same, rolled back before complete: every index keeps its name and its column
ALTER TABLE "doc" ALTER COLUMN "code" SET DATA TYPE bigint;
ALTER INDEX "doc_code_key" RENAME TO "doc_code_uq";
ALTER TABLE "doc" ALTER COLUMN "title" SET DATA TYPE text;
ALTER INDEX "doc_title_lower_idx" RENAME TO "doc_title_lower_ix";

-- base schema: 214-228-kinds.base.sql
-- then: migrate start; migrate complete
-- indexes on retyped columns renamed, of every kind: a unique constraint's (the constraint takes the name), an expression index, a partial one whose predicate reads the column (only)
ALTER TABLE "doc" ALTER COLUMN "code" SET DATA TYPE bigint;
ALTER INDEX "doc_code_key" RENAME TO "doc_code_uq";
ALTER TABLE "doc" ALTER COLUMN "title" SET DATA TYPE text;
ALTER INDEX "doc_title_lower_idx" RENAME TO "doc_title_lower_ix";
ALTER INDEX "doc_id_shown_idx" RENAME TO "doc_id_shown_ix";

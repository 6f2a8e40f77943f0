-- base schema: 214-228-kinds.base.sql
-- then: migrate start; migrate complete
-- a unique constraint on a retyped column renamed by RENAME CONSTRAINT: its carried copy takes the new name
ALTER TABLE "doc" ALTER COLUMN "code" SET DATA TYPE bigint;
ALTER TABLE "doc" RENAME CONSTRAINT "doc_code_key" TO "doc_code_uq";

-- base schema: 214-228.base.sql
-- then: migrate start; migrate rollback
-- the rename of an index on a retyped column waits for complete: a rollback before it leaves the index as it was
ALTER TABLE "Post" ALTER COLUMN "meta" SET DATA TYPE timestamp;
ALTER INDEX "Post_meta_idx" RENAME TO "Post_meta_idx_r";

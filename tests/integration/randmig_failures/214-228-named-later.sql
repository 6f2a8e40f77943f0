-- base schema: 214-228.base.sql
-- then: migrate start; migrate complete
-- the renamed index named again later in the file: refused before DDL (the rename runs at complete)
ALTER TABLE "Post" ALTER COLUMN "meta" SET DATA TYPE timestamp;
ALTER INDEX "Post_meta_idx" RENAME TO "Post_meta_idx_r";
COMMENT ON INDEX "Post_meta_idx_r" IS 'by time';

-- base schema: 214-228.base.sql
-- then: migrate start; migrate complete
-- failure: schema differs: -CREATE INDEX "Post_meta_idx_r" ON public."Post" USING btree (meta); | +CREATE INDEX "Post_meta_idx" ON public."Post" USING btree (meta);
ALTER TABLE "Post" ALTER COLUMN "meta" SET DATA TYPE timestamp;
ALTER INDEX "Post_meta_idx" RENAME TO "Post_meta_idx_r";

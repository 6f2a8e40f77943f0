-- base schema: 214-228.base.sql
-- then: migrate start; migrate complete
-- seed 214 again, file 229: the table renamed too, after the retype (the rename moves in front of it): the catalog is asked under the names before the file
ALTER TABLE "Post" ALTER COLUMN "meta" SET DATA TYPE timestamp;
ALTER TABLE "Post" RENAME TO "orderRecord";
CREATE TABLE "tagLog" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "score" BOOLEAN NOT NULL DEFAULT false,
    CONSTRAINT "tagLog_pkey" PRIMARY KEY ("id")
);
ALTER INDEX "Post_meta_idx" RENAME TO "Post_meta_idx_r";

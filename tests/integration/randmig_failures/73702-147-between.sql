-- base schema: 73702-147-between.base.sql
-- then: migrate start; migrate complete
ALTER TABLE "tag" RENAME COLUMN "team_id" TO "t1";
CREATE INDEX "tag_t1_idx" ON "tag" ("t1");
ALTER TABLE "tag" RENAME COLUMN "t1" TO "t2";
ALTER TABLE "tag" ALTER COLUMN "t2" SET NOT NULL;

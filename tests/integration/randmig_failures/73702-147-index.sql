-- base schema: 73702-147-index.base.sql
-- then: migrate start; migrate complete
ALTER TABLE "tag" RENAME COLUMN "team_id" TO "t1";
ALTER TABLE "tag" RENAME COLUMN "t1" TO "t2";
CREATE INDEX "tag_t2_idx" ON "tag" ("t2");

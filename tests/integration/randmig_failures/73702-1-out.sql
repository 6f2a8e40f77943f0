-- base schema: 73702-1-out.base.sql
-- then: migrate start; migrate complete
ALTER TABLE "team" RENAME TO "crew";
ALTER TABLE "tag" ALTER COLUMN "team_id" TYPE bigint;

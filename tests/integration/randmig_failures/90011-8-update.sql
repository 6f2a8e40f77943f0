-- base schema: 90011-8.base.sql
-- then: migrate start; migrate complete
-- a guard beside 90011-8: an UPDATE of another column runs where it stands now (it waited for complete before; both end where Postgres ends)
ALTER TABLE "Comment" ALTER COLUMN "payload" SET DATA TYPE text USING "payload"::text;
UPDATE "Comment" SET "updatedAt" = 1.25 WHERE "id" % 5 = 1;
DROP INDEX "Comment_session_id_idx";

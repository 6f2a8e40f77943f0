-- base schema: 86348-280.base.sql
-- then: migrate start; migrate rollback
-- seed 86348: a column retyped twice (refused, saying "pick another name": a second column for each change); the two changes composed into one, online and identical
CREATE INDEX CONCURRENTLY "Comment_meta_idx" ON "Comment"("meta") WHERE "meta" IS NOT NULL;
ALTER TABLE "Post" RENAME TO "taskRecord";
ALTER TABLE "taskRecord" RENAME TO "taskRecord2";
CREATE INDEX "taskRecord2_slug_idx" ON "taskRecord2"(lower("slug"));
ALTER TABLE "taskRecord2" ADD CONSTRAINT "taskRecord2_slug_key" UNIQUE ("slug");
ALTER TABLE "Comment" ALTER COLUMN "score" SET DATA TYPE bigint USING "score"::bigint;
ALTER TABLE "taskRecord2" RENAME COLUMN "flags" TO "code";
CREATE INDEX "Profile_createdAt_idx" ON "Profile"("createdAt", "level") WHERE "createdAt" IS NOT NULL;
ALTER TABLE "Comment" ALTER COLUMN "score" SET DATA TYPE numeric(20,0);
CREATE TYPE "Plan" AS ENUM ('pending', 'ONE', 'active', 'TWO');
CREATE TYPE "Plan_57" AS ENUM ('FOUR', 'THREE', 'inactive', 'pending');
ALTER TABLE "Comment" ADD COLUMN "slug" "Plan_57";

-- base schema: 90003-139.base.sql
-- then: migrate start; migrate complete
-- (sibling of 90003-139) the partitioned column retyped first, the partial index made over its second column, then dropped
ALTER TABLE "memo" ALTER COLUMN "createdAt" SET DATA TYPE timestamptz;
CREATE INDEX "memo_createdAt_idx" ON "memo"("id") WHERE "createdAt" IS NOT NULL;
DROP INDEX "memo_createdAt_idx";

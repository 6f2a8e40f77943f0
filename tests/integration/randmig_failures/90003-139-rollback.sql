-- base schema: 90003-139.base.sql
-- then: migrate start; migrate rollback
-- (sibling of 90003-139) rolled back: the index the file made is dropped with the rest
CREATE INDEX "memo_createdAt_idx" ON "memo"("id") WHERE "createdAt" IS NOT NULL;
DROP INDEX "memo_createdAt_idx";

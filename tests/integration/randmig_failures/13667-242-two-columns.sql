-- base schema: 13667-258.base.sql
-- then: migrate start; migrate rollback
-- (sibling of 13667-242) an index on two columns made, then one of them retyped, rolled back
CREATE INDEX "Session_createdAt_meta_idx" ON "Session" ("createdAt", "meta");
ALTER TABLE "Session" ALTER COLUMN "createdAt" SET DATA TYPE numeric(12,2);

-- base schema: 90003-139.base.sql
-- then: migrate start; migrate complete
-- seed 90003's file 140: an index made on a partitioned table, then dropped, in one file: the drop after the contract was DROP INDEX CONCURRENTLY, which Postgres refuses on a partitioned index, and the index stayed
CREATE INDEX "memo_createdAt_idx" ON "memo"("id") WHERE "createdAt" IS NOT NULL;
DROP INDEX "memo_createdAt_idx";

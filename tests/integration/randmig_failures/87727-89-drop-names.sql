-- base schema: 87727-89.base.sql
-- then: migrate start; migrate complete
-- the class of 87727-89 with a plain DROP COLUMN: the names of the indexes and constraints it takes along are free after it, as offline
ALTER TABLE "Post" DROP COLUMN "payload";
ALTER TABLE "Post" ADD CONSTRAINT "Post_payload_key" UNIQUE ("createdAt");
CREATE INDEX "Post_payload_lower_idx" ON "Post" (lower("createdAt"));

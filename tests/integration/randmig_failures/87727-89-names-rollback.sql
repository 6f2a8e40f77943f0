-- base schema: 87727-89.base.sql
-- then: migrate start; migrate rollback
-- the class of 87727-89, rolled back: the old column keeps its UNIQUE constraint and expression index, the new one's constraint goes
ALTER TABLE "Post" DROP COLUMN "payload";
ALTER TABLE "Post" ADD COLUMN "payload" TEXT;
ALTER TABLE "Post" ADD CONSTRAINT "Post_payload_key" UNIQUE ("payload");

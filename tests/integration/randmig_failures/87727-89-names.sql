-- base schema: 87727-89.base.sql
-- then: migrate start; migrate complete
-- the class of 87727-89: the dropped column's UNIQUE constraint added again under its name on the new column: the name is free once the contract drops the old column, as offline
ALTER TABLE "Post" DROP COLUMN "payload";
ALTER TABLE "Post" ADD COLUMN "payload" TEXT;
ALTER TABLE "Post" ADD CONSTRAINT "Post_payload_key" UNIQUE ("payload");

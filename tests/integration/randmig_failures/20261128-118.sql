-- base schema: 20261128-118.base.sql
-- then: migrate start; migrate complete
-- failure: schema differs: -    payload text | +    payload text DEFAULT 0
ALTER TABLE "tag" DROP COLUMN "payload";
ALTER TABLE "tag" ADD COLUMN "payload" TEXT;

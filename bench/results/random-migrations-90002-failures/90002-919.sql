-- base schema: 90002-919.base.sql
-- then: migrate start; migrate complete
-- failure: schema differs: -    payload jsonb | +    payload jsonb NOT NULL
UPDATE "Post" SET "payload" = '{"k": 3, "s": "fill"}' WHERE "payload" IS NULL;
ALTER TABLE "Post" ALTER COLUMN "payload" SET NOT NULL;
UPDATE "Session" SET "status" = 52 WHERE "status" IS NULL;
ALTER TABLE "Post" ALTER COLUMN "payload" DROP NOT NULL;

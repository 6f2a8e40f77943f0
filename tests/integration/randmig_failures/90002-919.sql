-- base schema: 90002-919.base.sql
-- then: migrate start; migrate complete
-- seed 90002's file 920: the same as 90002-314 on another table, with an UPDATE of a third between
UPDATE "Post" SET "payload" = '{"k": 3, "s": "fill"}' WHERE "payload" IS NULL;
ALTER TABLE "Post" ALTER COLUMN "payload" SET NOT NULL;
UPDATE "Session" SET "status" = 52 WHERE "status" IS NULL;
ALTER TABLE "Post" ALTER COLUMN "payload" DROP NOT NULL;

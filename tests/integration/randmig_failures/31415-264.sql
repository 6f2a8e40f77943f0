-- base schema: 31415-264.base.sql
-- then: migrate start; migrate complete
-- failure: schema differs: -    payload bigint[] NOT NULL | +    payload bigint[]
UPDATE "Comment" SET "payload" = ARRAY[3, 3] WHERE "payload" IS NULL;
ALTER TABLE "Comment" ALTER COLUMN "payload" SET NOT NULL;
ALTER TABLE "item" DROP COLUMN "payload";
ALTER TABLE "Comment" ALTER COLUMN "payload" SET DATA TYPE bigint[];

-- base schema: 31415-264.base.sql
-- then: migrate start; migrate complete
-- a default set, another table's change, then the column retyped: the rebuilt column keeps the default
ALTER TABLE "Comment" ALTER COLUMN "payload" SET DEFAULT ARRAY[1, 2];
ALTER TABLE "item" DROP COLUMN "payload";
ALTER TABLE "Comment" ALTER COLUMN "payload" SET DATA TYPE bigint[];

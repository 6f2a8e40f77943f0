-- base schema: 31415-264.base.sql
-- then: migrate start; migrate complete
-- the column retyped, another table's change, then its default set and its NOT NULL dropped: both reach the rebuilt column
ALTER TABLE "Comment" ALTER COLUMN "kind" SET DATA TYPE bigint[];
ALTER TABLE "item" DROP COLUMN "payload";
ALTER TABLE "Comment" ALTER COLUMN "kind" SET DEFAULT ARRAY[5];
ALTER TABLE "Comment" ALTER COLUMN "kind" DROP NOT NULL;

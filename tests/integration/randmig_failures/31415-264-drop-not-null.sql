-- base schema: 31415-264.base.sql
-- then: migrate start; migrate complete
-- NOT NULL dropped, another table's change, then the column retyped: the rebuilt column stays nullable
ALTER TABLE "Comment" ALTER COLUMN "kind" DROP NOT NULL;
ALTER TABLE "item" DROP COLUMN "payload";
ALTER TABLE "Comment" ALTER COLUMN "kind" SET DATA TYPE bigint[];

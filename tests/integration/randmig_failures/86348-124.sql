-- base schema: 86348-124.base.sql
-- then: migrate start; migrate complete
-- seed 86348's file 125 (refused, saying "pick another name"): a column retyped twice in one file, nothing between seeing the first type; the two changes composed into one, online and identical
ALTER TABLE "memo" ALTER COLUMN "label" SET DATA TYPE numeric(10,2);
ALTER TABLE "memo" ALTER COLUMN "label" SET DATA TYPE double precision USING "label"::double precision;

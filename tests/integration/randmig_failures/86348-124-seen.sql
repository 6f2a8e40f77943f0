-- base schema: 86348-124.base.sql
-- then: migrate start; migrate complete
-- a column retyped twice with a CHECK between made on the first new type: not composed, refused before DDL saying to write one change or put the second in a later migration
ALTER TABLE "memo" ALTER COLUMN "label" SET DATA TYPE numeric(10,2);
ALTER TABLE "memo" ADD CONSTRAINT "memo_label_check" CHECK ("label" > -1000);
ALTER TABLE "memo" ALTER COLUMN "label" SET DATA TYPE double precision USING "label"::double precision;

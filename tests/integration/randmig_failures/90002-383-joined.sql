-- base schema: 90002-383.base.sql
-- then: migrate start; migrate complete
-- a sibling of 90002-383: the SET DEFAULT right before the retype, in one operation (keys in another order: jsonb reorders them)
ALTER TABLE "item" ALTER COLUMN "level" SET DEFAULT '{"s": "dflt", "k": 2}';
ALTER TABLE "item" ALTER COLUMN "level" SET DATA TYPE json;

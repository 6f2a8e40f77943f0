-- base schema: 90002-383.base.sql
-- then: migrate start; migrate rollback
-- a guard beside 90002-383: rolled back
ALTER TABLE "item" ALTER COLUMN "level" SET DEFAULT '{"k": 2, "s": "dflt"}';
ALTER TABLE "item" RENAME TO "PostEntry";
ALTER TABLE "PostEntry" ALTER COLUMN "level" SET DATA TYPE json;

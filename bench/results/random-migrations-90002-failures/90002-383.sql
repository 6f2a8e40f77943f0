-- base schema: 90002-383.base.sql
-- then: migrate start; migrate complete
-- failure: schema differs: -    level json DEFAULT '{"k": 2, "s": "dflt"}'::jsonb | +    level json DEFAULT '{"k": 2, "s": "dflt"}'::json
ALTER TABLE "item" ALTER COLUMN "level" SET DEFAULT '{"k": 2, "s": "dflt"}';
ALTER TABLE "item" RENAME TO "PostEntry";
ALTER TABLE "PostEntry" ALTER COLUMN "level" SET DATA TYPE json;

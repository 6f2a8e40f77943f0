-- base schema: 90002-383.base.sql
-- then: migrate start; migrate complete
-- seed 90002's file 384: SET DEFAULT of a literal on a jsonb column, then a retype to json: offline the default stays the jsonb constant converted, online the second column read the literal as json (schema differed); a literal default set before a retype is cast to the type it was set on
ALTER TABLE "item" ALTER COLUMN "level" SET DEFAULT '{"k": 2, "s": "dflt"}';
ALTER TABLE "item" RENAME TO "PostEntry";
ALTER TABLE "PostEntry" ALTER COLUMN "level" SET DATA TYPE json;

-- base schema: 90002-383.base.sql
-- then: migrate start; migrate complete
-- a sibling of 90002-383: a boolean's and a numeric(10,2)'s literal defaults, then both retyped to text (offline: true and 1.5; online they were the literals as text)
ALTER TABLE "item" ALTER COLUMN "email" SET DEFAULT 'yes';
ALTER TABLE "item" ALTER COLUMN "updatedAt" SET DEFAULT '1.5';
ALTER TABLE "item" RENAME TO "PostEntry";
ALTER TABLE "PostEntry" ALTER COLUMN "email" SET DATA TYPE text;
ALTER TABLE "PostEntry" ALTER COLUMN "updatedAt" SET DATA TYPE text;

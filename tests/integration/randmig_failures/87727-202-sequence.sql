-- base schema: 87727-202-sequence.base.sql
-- then: migrate start; migrate rollback
-- failure: (sibling of 87727-202) a sequence and a function made after the table whose defaults then use them: the rollback dropped them first
CREATE TABLE "itemLog" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "slug" INTEGER,
    "score" TEXT,
    CONSTRAINT "itemLog_pkey" PRIMARY KEY ("id")
);
CREATE SEQUENCE "itemLog_slug_seq";
CREATE FUNCTION "item_label"() RETURNS text LANGUAGE sql AS 'SELECT ''item''';
ALTER TABLE "itemLog" ALTER COLUMN "slug" SET DEFAULT nextval('"itemLog_slug_seq"');
ALTER TABLE "itemLog" ALTER COLUMN "score" SET DEFAULT "item_label"();

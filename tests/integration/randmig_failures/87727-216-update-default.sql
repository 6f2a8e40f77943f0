-- base schema: 87727-216.base.sql
-- then: migrate start; migrate complete
-- the class of 87727-216: a default dropped above an UPDATE ... SET c = DEFAULT: offline the rows get NULL
ALTER TABLE "Invoice" ALTER COLUMN "weight" DROP DEFAULT;
UPDATE "Invoice" SET "weight" = DEFAULT WHERE "id" <= 5;

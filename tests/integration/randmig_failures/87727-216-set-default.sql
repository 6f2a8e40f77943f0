-- base schema: 87727-216.base.sql
-- then: migrate start; migrate complete
-- the class of 87727-216: a default set above an INSERT that leaves the column out: offline the rows get the new default
ALTER TABLE "Invoice" ALTER COLUMN "code" SET DEFAULT true;
INSERT INTO "Invoice" ("rank", "flags") SELECT "rank", "flags" FROM "Invoice" WHERE "id" <= 3;

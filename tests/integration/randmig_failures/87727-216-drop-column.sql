-- base schema: 87727-216.base.sql
-- then: migrate start; migrate complete
-- the class of 87727-216: a NOT NULL column without a default dropped above an INSERT that cannot name it: offline the INSERT never meets its NOT NULL
ALTER TABLE "Invoice" DROP COLUMN "flags";
INSERT INTO "Invoice" ("rank", "code") SELECT "rank", "code" FROM "Invoice" WHERE "id" <= 3;

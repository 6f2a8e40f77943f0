-- base schema: 73143-12.base.sql
-- then: migrate start; migrate complete
-- a sibling of 73143-12: the statements alone
ALTER TABLE "ledger" RENAME TO "users";
ALTER TABLE "users" RENAME TO "users2";
ALTER TABLE "task" ADD COLUMN "users2Id" integer;
UPDATE "task" SET "users2Id" = (SELECT min("id") FROM "users2");

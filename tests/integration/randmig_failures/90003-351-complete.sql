-- base schema: 90003-351.base.sql
-- then: migrate start; migrate complete
-- as 90003-351, completed (rows differed)
ALTER TABLE "task" RENAME COLUMN "level" TO "kind7";
ALTER TABLE "task" ADD COLUMN "level" text;
ALTER TABLE "task" RENAME TO "accountRecord";
ALTER TABLE "accountRecord" RENAME TO "accountRecord2";
ALTER TABLE "memo" RENAME TO "accounts";
ALTER TABLE "accounts" RENAME TO "accounts2";
ALTER TABLE "accounts2" ADD COLUMN "version" varchar(40) DEFAULT 'x';
UPDATE "accountRecord2" SET "level" = 'upd-8' WHERE "level" IS NOT NULL;

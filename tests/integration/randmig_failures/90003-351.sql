-- base schema: 90003-351.base.sql
-- then: migrate start; migrate rollback
-- seed 90003's file 352: RENAME COLUMN level TO kind7, ADD COLUMN level, then an UPDATE of level: it ran at expand on the renamed column, which has the name until the contract (rows differed after the rollback); a data statement naming a column added under a name a rename frees is written with that column's name until then
ALTER TABLE "task" RENAME COLUMN "level" TO "kind7";
ALTER TABLE "task" ADD COLUMN "level" text;
ALTER TABLE "task" RENAME TO "accountRecord";
ALTER TABLE "accountRecord" RENAME TO "accountRecord2";
ALTER TABLE "memo" RENAME TO "accounts";
ALTER TABLE "accounts" RENAME TO "accounts2";
ALTER TABLE "accounts2" ADD COLUMN "version" varchar(40) DEFAULT 'x';
UPDATE "accountRecord2" SET "level" = 'upd-8' WHERE "level" IS NOT NULL;

-- base schema: 90003-13.base.sql
-- then: migrate start; migrate complete
-- seed 90003's file 14: a foreign key of memo to account dropped, then a DELETE of team, whose ON DELETE CASCADE deletes account rows memo still referenced at expand: the DELETE waits for the drop now (the tables a DELETE's cascades reach count)
ALTER TABLE "memo" DROP CONSTRAINT "memo_account_id_fkey";
DELETE FROM "team" WHERE "id" % 7 = 3;

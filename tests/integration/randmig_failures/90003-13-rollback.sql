-- base schema: 90003-13.base.sql
-- then: migrate start; migrate rollback
-- (sibling of 90003-13) rolled back: the DELETE, waiting for the drop, never ran, and the key is there
ALTER TABLE "memo" DROP CONSTRAINT "memo_account_id_fkey";
DELETE FROM "team" WHERE "id" % 7 = 3;

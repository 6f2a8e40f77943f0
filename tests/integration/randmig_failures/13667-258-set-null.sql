-- base schema: 13667-271.base.sql
-- then: migrate start; migrate complete
-- (sibling of 13667-258, and 7-29) a foreign key with ON DELETE SET NULL dropped, then a DELETE of the rows it references: the key's action would still null the other table's column before the contract
ALTER TABLE "tag" DROP CONSTRAINT "tag_event_id_fkey";
DELETE FROM "event" WHERE "id" % 4 = 1;

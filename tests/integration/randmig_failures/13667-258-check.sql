-- base schema: 13667-271.base.sql
-- then: migrate start; migrate complete
-- (sibling of 13667-258) a check constraint dropped, then an UPDATE writing what it refused
ALTER TABLE "event" DROP CONSTRAINT "event_amount_check";
UPDATE "event" SET "amount" = -1 WHERE "id" % 5 = 0;

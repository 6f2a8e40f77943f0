-- base schema: 13667-258.base.sql
-- then: migrate start; migrate complete
-- (sibling of 13667-242, seed 13667's file 221) a check made, an UPDATE of the table between, then the checked column retyped: made after the retype, over the second column
ALTER TABLE "ledger" ADD CONSTRAINT "ledger_payload_check" CHECK (length("payload") < 100);
UPDATE "ledger" SET "body" = '{"k": 9}' WHERE "id" = 3;
ALTER TABLE "ledger" ALTER COLUMN "payload" SET DATA TYPE varchar(80);

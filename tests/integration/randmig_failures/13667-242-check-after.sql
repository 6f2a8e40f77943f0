-- base schema: 13667-258.base.sql
-- then: migrate start; migrate complete
-- (sibling of 13667-242) a column retyped, then a CHECK on it: the check was added on the old column, which the contract drops with it (the constraint lost, where offline it stays); now made over the second column
ALTER TABLE "ledger" ALTER COLUMN "payload" SET DATA TYPE varchar(80);
ALTER TABLE "ledger" ADD CONSTRAINT "ledger_payload_check" CHECK (length("payload") < 100);

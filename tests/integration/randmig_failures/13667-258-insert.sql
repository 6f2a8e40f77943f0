-- base schema: 13667-258.base.sql
-- then: migrate start; migrate complete
-- (sibling of 13667-258) a unique constraint dropped, then an INSERT writing a value it holds: the constraint stays until the contract, so the INSERT waits for it
ALTER TABLE "ledger" DROP CONSTRAINT "ledger_level_key";
INSERT INTO "ledger" ("meta", "level") SELECT "meta", "level" FROM "ledger" WHERE "id" < 6;

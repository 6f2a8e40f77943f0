-- base schema: 13667-258.base.sql
-- then: migrate start; migrate complete
-- seed 13667's file 242, on another base: a unique index made, then its column retyped; offline the retype rebuilds the index on the new type
CREATE UNIQUE INDEX "ledger_payload_key" ON "ledger" ("payload");
ALTER TABLE "ledger" ALTER COLUMN "payload" SET DATA TYPE varchar(80);

-- base schema: 13667-258.base.sql
-- then: migrate start; migrate complete
-- (guard for 13667-242) the index renamed between its create and the retype: it keeps its place, and the file is refused before DDL as before
CREATE UNIQUE INDEX "ledger_payload_key" ON "ledger" ("payload");
ALTER INDEX "ledger_payload_key" RENAME TO "ledger_payload_uq";
ALTER TABLE "ledger" ALTER COLUMN "payload" SET DATA TYPE varchar(80);

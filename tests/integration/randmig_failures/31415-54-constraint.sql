-- base schema: 31415-54.base.sql
-- then: migrate start; migrate complete
-- sibling of 31415-54.sql: the rename of the constraint the file just added under a dropped one's name
ALTER TABLE "memo" DROP CONSTRAINT "memo_ledger_id_fkey";
ALTER TABLE "memo" ADD CONSTRAINT "memo_ledger_id_fkey" FOREIGN KEY ("ledger_id") REFERENCES "ledger"("id") ON DELETE CASCADE;
ALTER TABLE "memo" RENAME CONSTRAINT "memo_ledger_id_fkey" TO "memo_ledger_id_fkey_r";

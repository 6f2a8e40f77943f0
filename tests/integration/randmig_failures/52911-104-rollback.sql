-- base schema: 52911-104.base.sql
-- then: migrate start; migrate rollback
-- seed 52911 (failure: the partitions' keys took the name of a RENAME CONSTRAINT folded into their creation, where offline they keep the name they were made with): a partitioned table's foreign key dropped, added again and renamed; the rename stays as written, online and identical
ALTER TABLE "ledger" DROP CONSTRAINT "ledger_item_id_fkey";
ALTER TABLE "ledger" ADD CONSTRAINT "ledger_item_id_fkey" FOREIGN KEY ("item_id") REFERENCES "item"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "ledger" RENAME CONSTRAINT "ledger_item_id_fkey" TO "ledger_item_id_fkey_r";

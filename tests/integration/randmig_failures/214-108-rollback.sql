-- base schema: 214-108.base.sql
-- then: migrate start; migrate rollback
-- seed 214's file 108 (refused before): a table renamed before its column is retyped (the old type read under the name before the file), renamed twice (the plan follows both renames back)
ALTER TABLE "ledger" RENAME TO "orderEntry";
DROP INDEX "order_status_lower_idx";
ALTER TABLE "note" DROP CONSTRAINT "note_order_id_fkey";
ALTER TABLE "note" ADD CONSTRAINT "note_order_id_fkey" FOREIGN KEY ("order_id") REFERENCES "order"("id") ON DELETE SET NULL ON UPDATE CASCADE;
ALTER TABLE "item" RENAME TO "taskEntry";
DROP INDEX "order_status_idx";
ALTER TABLE "order" ALTER COLUMN "label" SET DATA TYPE date USING "label"::date;
ALTER TABLE "taskEntry" ALTER COLUMN "ref" SET DATA TYPE text;
ALTER TABLE "taskEntry" RENAME TO "tag_new";
ALTER TABLE "tag_new" RENAME TO "tag_new2";
DROP TABLE "user";

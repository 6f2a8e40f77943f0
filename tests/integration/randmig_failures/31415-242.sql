-- base schema: 31415-242.base.sql
-- then: migrate start; migrate rollback
-- the runner's own (this stop): a column added to a table renamed before and after it, rolled back; the runner dropped the added column under a name its table no longer had
UPDATE "task" SET "rank" = '{"k": 1, "s": "upd"}';
ALTER TABLE "Profile" RENAME TO "orders";
ALTER TABLE "orders" ADD COLUMN "rank8" boolean;
ALTER TABLE "orders" RENAME TO "userEntry";

-- base schema: 87727-130.base.sql
-- then: migrate start; migrate complete
-- the class of 87727-130: the dropped column's index created again under its name on the new column: built under a temporary name, renamed once the contract dropped the old column
ALTER TABLE "memo" DROP COLUMN "level";
ALTER TABLE "memo" ADD COLUMN "level" TEXT;
CREATE INDEX "memo_level_idx" ON "memo" ("level");

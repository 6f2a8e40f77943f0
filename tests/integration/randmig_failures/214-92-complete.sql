-- base schema: 214-92.base.sql
-- then: migrate start; migrate complete
-- seed 214's file 92 (refused before): an index renamed, then dropped under its new name: the drop takes the index under its old name at the contract, the rename folds away
ALTER TABLE "Comment" RENAME TO "accountEntry";
ALTER TYPE "Priority" RENAME TO "PriorityType";
ALTER TABLE "Profile" RENAME TO "taskEntry";
ALTER TABLE "taskEntry" RENAME CONSTRAINT "Profile_pkey" TO "taskEntry_pkey";
ALTER TABLE "taskEntry" RENAME CONSTRAINT "Profile_order_id_fkey" TO "taskEntry_order_id_fkey";
ALTER TABLE "taskEntry" RENAME CONSTRAINT "Profile_parentId_fkey" TO "taskEntry_parentId_fkey";
ALTER INDEX "Profile_parentId_idx" RENAME TO "taskEntry_parentId_idx";
ALTER INDEX "account_notes_lower_idx" RENAME TO "account_notes_lower_idx_r";
ALTER TABLE "taskEntry" RENAME COLUMN "order_id" TO "extra";
ALTER TABLE "taskEntry" RENAME COLUMN "extra" TO "createdAt7";
DROP INDEX CONCURRENTLY "account_notes_lower_idx_r";

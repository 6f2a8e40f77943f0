-- base schema: 73143-158.base.sql
-- then: migrate start; migrate complete
-- a sibling of 73143-158: ALTER INDEX ... RENAME frees the name at expand, where the new index is built under it
ALTER INDEX "user_code_key" RENAME TO "user_code_key_r";
CREATE UNIQUE INDEX "user_code_key" ON "user"("code");

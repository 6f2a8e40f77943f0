-- base schema: 73143-158.base.sql
-- then: migrate start; migrate rollback
-- a sibling of 73143-158: ALTER INDEX ... RENAME renames the key behind it too, so a key added under the name is added under it at expand
ALTER INDEX "user_code_key" RENAME TO "user_code_key_r";
ALTER TABLE "user" ADD CONSTRAINT "user_code_key" UNIQUE ("code");

-- base schema: 73143-158.base.sql
-- then: migrate start; migrate complete
-- a sibling of 73143-158: the two statements alone
ALTER TABLE "user" RENAME CONSTRAINT "user_code_key" TO "user_code_key_r";
CREATE UNIQUE INDEX "user_code_key" ON "user"("code");

-- base schema: 73143-88.base.sql
-- then: migrate start; migrate complete
-- seed 73143's file 89, a sibling (the file itself stays refused: a retype USING to_jsonb of the added column): a column renamed and retyped, then its old name added: refused; the added column is apart until the contract, as after a plain rename
ALTER TABLE "tag" RENAME COLUMN "email" TO "flags8";
ALTER TABLE "tag" ALTER COLUMN "flags8" SET DATA TYPE text;
ALTER TABLE "tag" ADD COLUMN "email" integer;

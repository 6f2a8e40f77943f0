-- base schema: 90003-519.base.sql
-- then: migrate start; migrate complete
-- seed 90003's file 520: Prisma's enum recreation, then ADD COLUMN of the type by its new name: the column was made of the old type (the rename runs at complete) and the contract's DROP TYPE failed after DDL; a column's type naming a type renamed at complete is written by its name at expand
CREATE TYPE "stage_new" AS ENUM ('draft');
DROP TYPE "stage";
ALTER TYPE "stage_new" RENAME TO "stage";
ALTER TABLE "Profile" ADD COLUMN "amount8" "stage";

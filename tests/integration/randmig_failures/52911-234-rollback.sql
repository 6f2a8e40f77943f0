-- base schema: 52911-234.base.sql
-- then: migrate start; migrate rollback
-- seed 52911 (failure: the index came back under its old name at the contract): a table renamed, then its index, then the indexed column retyped; the carried index takes the name the rename gave it, online and identical
ALTER TABLE "Invoice" RENAME TO "teamEntry";
ALTER INDEX "Invoice_weight_idx" RENAME TO "teamEntry_weight_idx";
ALTER TABLE "teamEntry" ALTER COLUMN "weight" SET DATA TYPE text;

-- base schema: 52911-234.base.sql
-- then: migrate start; migrate complete
-- failure: schema differs: +CREATE INDEX "Invoice_weight_idx" ON public."teamEntry" USING btree (weight); | -CREATE INDEX "teamEntry_weight_idx" ON public."teamEntry" USING btree (weight);
ALTER TABLE "Invoice" RENAME TO "teamEntry";
ALTER INDEX "Invoice_weight_idx" RENAME TO "teamEntry_weight_idx";
ALTER TABLE "teamEntry" ALTER COLUMN "weight" SET DATA TYPE text;

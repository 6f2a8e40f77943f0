-- base schema: 52911-164.base.sql
-- then: migrate start; migrate complete
-- failure: schema differs: -CREATE INDEX ledger_title_idx ON public.ledger USING btree (id) WHERE (extra IS NOT NULL);
CREATE INDEX "ledger_title_idx" ON "ledger"("id") WHERE "title" IS NOT NULL;
ALTER TABLE "ledger" ALTER COLUMN "title" SET DATA TYPE bigint;
ALTER TABLE "ledger" RENAME COLUMN "title" TO "extra";

-- base schema: 31415-54.base.sql
-- then: migrate start; migrate complete
-- failure: schema differs: -CREATE INDEX ledger_body_lower_idx_r ON public.ledger USING btree (status); | +CREATE INDEX ledger_body_lower_idx ON public.ledger USING btree (status); | +CREATE INDEX ledger_body_lower_idx_r ON public.ledger USING btree (lower((body)::text));
DROP INDEX "ledger_body_lower_idx";
CREATE INDEX "ledger_body_lower_idx" ON "ledger"("status");
ALTER INDEX "ledger_body_lower_idx" RENAME TO "ledger_body_lower_idx_r";

-- base schema: 20261128-16.base.sql
-- then: migrate start; migrate rollback
-- failure: rollback schema differs: +CREATE INDEX note_amount_idx_r ON public.note USING btree (amount) WHERE (amount IS NOT NULL);
CREATE INDEX CONCURRENTLY "note_amount_idx" ON "note"("amount") WHERE "amount" IS NOT NULL;
ALTER INDEX "note_amount_idx" RENAME TO "note_amount_idx_r";

-- base schema: 20261128-48.base.sql
-- then: migrate start; migrate rollback
-- failure: rollback schema differs: -CREATE INDEX account_meta_lower_idx ON public.account USING btree (lower(meta)); | +CREATE INDEX "taskEntry_meta_lower_idx" ON public.account USING btree (lower(meta));
ALTER INDEX "account_meta_lower_idx" RENAME TO "taskEntry_meta_lower_idx";

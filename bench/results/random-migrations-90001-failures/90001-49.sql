-- base schema: 90001-49.base.sql
-- then: migrate start; migrate complete
-- failure: schema differs: -CREATE INDEX "Invoice_email_lower_idx_r" ON public."Invoice" USING btree (lower((email)::text)); | +CREATE INDEX "Invoice_email_lower_idx" ON public."Invoice" USING btree (lower((email)::text));
ALTER INDEX "Invoice_email_lower_idx" RENAME TO "Invoice_email_lower_idx_r";
ALTER TABLE "Invoice" ALTER COLUMN "email" SET DATA TYPE varchar(200) USING "email"::varchar(200);

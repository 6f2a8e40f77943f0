-- base schema: 31415-9.base.sql
-- then: migrate start; migrate complete
-- failure: schema differs: -CREATE INDEX event_email_idx ON public.event USING btree (email, ref);
CREATE INDEX "event_email_idx" ON "event"("email", "ref");
ALTER TABLE "event" ALTER COLUMN "ref" SET DATA TYPE text USING "ref"::text;

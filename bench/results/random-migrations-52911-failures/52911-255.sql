-- base schema: 52911-255.base.sql
-- then: migrate start; migrate complete
-- failure: schema differs: -CREATE INDEX event_notes_idx ON public.event USING btree (id) WHERE (version IS NOT NULL);
CREATE INDEX "event_notes_idx" ON "event"("id") WHERE "notes" IS NOT NULL;
ALTER TABLE "event" ALTER COLUMN "notes" SET DATA TYPE json;
ALTER TABLE "event" RENAME COLUMN "notes" TO "version";

-- base schema: 87727-89.base.sql
-- then: migrate start; migrate complete
-- failure: schema differs: +    ADD CONSTRAINT "Post_payload_key" UNIQUE (payload); | +ALTER TABLE ONLY public."Post" | +CREATE INDEX "Post_payload_lower_idx" ON public."Post" USING btree (lower(payload));
ALTER TABLE "Post" DROP COLUMN "payload";
ALTER TABLE "Post" ADD COLUMN "payload" TEXT;

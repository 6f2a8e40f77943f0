-- base schema: 86348-12.base.sql
-- then: migrate start; migrate rollback
-- seed 86348: a column retyped twice (refused, saying "pick another name": a second column for each change); the two changes composed into one, online and identical
ALTER TABLE "Session" ADD COLUMN "notes" numeric(10,2);
CREATE INDEX "order_updatedAt_idx" ON "order"("id") WHERE "updatedAt" IS NOT NULL;
ALTER TABLE "order" ALTER COLUMN "updatedAt" DROP DEFAULT;
ALTER TABLE "order" ALTER COLUMN "updatedAt" SET DATA TYPE text USING "updatedAt"::text;
ALTER TABLE "order" ALTER COLUMN "meta" SET DATA TYPE double precision USING "meta"::double precision;
ALTER TABLE "Session" DROP COLUMN "body";
UPDATE "event" SET "weight" = 'open' WHERE "weight" IS NOT NULL;
ALTER TABLE "event" RENAME COLUMN "amount" TO "code5";
ALTER TABLE "event" ADD COLUMN "amount" text;
ALTER TABLE "order" ALTER COLUMN "updatedAt" SET DATA TYPE varchar(200);
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'event_code5_check') THEN
    ALTER TABLE "event" ADD CONSTRAINT "event_code5_check" CHECK ("code5" IS NOT NULL OR true);
  END IF;
END $$;
ALTER TABLE "event" DROP CONSTRAINT "event_code5_check";

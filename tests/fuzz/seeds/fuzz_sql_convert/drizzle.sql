ALTER TABLE "usage_events" RENAME COLUMN "bucket" TO "Bucket Key";--> statement-breakpoint
ALTER TABLE "usage_events" ALTER COLUMN "Bucket Key" SET DATA TYPE integer;--> statement-breakpoint
ALTER TABLE "usage_events" ADD COLUMN "window_start" timestamp with time zone;--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "usage_admin_bucket_idx" ON "usage_events" USING btree ("Bucket Key","window_start");

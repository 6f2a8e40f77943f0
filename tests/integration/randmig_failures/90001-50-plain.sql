-- base schema: 13667-271.base.sql
-- then: migrate start; migrate complete
-- (sibling of 90001-50) a plain index renamed, another statement between, then its column retyped
ALTER INDEX "event_label_idx" RENAME TO "event_label_idx_r";
ALTER TABLE "tag" ADD COLUMN "extra" text;
ALTER TABLE "event" ALTER COLUMN "label" SET DATA TYPE text;

-- base schema: 90012-66.base.sql
-- then: migrate start; migrate rollback
-- a sibling of 90012-66: a CHECK renamed, then its column retyped, rolled back
ALTER TABLE "Invoice" RENAME CONSTRAINT "Invoice_rank_check" TO "Invoice_rank_nonneg";
ALTER TABLE "Invoice" ALTER COLUMN "rank" TYPE bigint;

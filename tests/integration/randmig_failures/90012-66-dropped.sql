-- base schema: 90012-66.base.sql
-- then: migrate start; migrate complete
-- a sibling of 90012-66: a CHECK renamed, dropped under its new name, then its column retyped
ALTER TABLE "Invoice" RENAME CONSTRAINT "Invoice_rank_check" TO "Invoice_rank_nonneg";
ALTER TABLE "Invoice" DROP CONSTRAINT "Invoice_rank_nonneg";
ALTER TABLE "Invoice" ALTER COLUMN "rank" TYPE bigint;

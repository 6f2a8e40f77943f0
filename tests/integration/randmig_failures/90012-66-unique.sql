-- base schema: 90012-66.base.sql
-- then: migrate start; migrate complete
-- a sibling of 90012-66: a unique constraint renamed, then its column retyped
ALTER TABLE "Invoice" RENAME CONSTRAINT "Invoice_email_key" TO "Invoice_email_uq";
ALTER TABLE "Invoice" ALTER COLUMN "email" TYPE char(300);

-- base schema: 61207-270.base.sql
-- then: migrate start; migrate complete
-- a sibling of 61207-270: SET NOT NULL right after the ADD with a default is folded into the add (a plain column there), online before and after
ALTER TABLE "ledger" RENAME COLUMN "label" TO "level9";
ALTER TABLE "ledger" ADD COLUMN "label" text DEFAULT 'x';
ALTER TABLE "ledger" ALTER COLUMN "label" SET NOT NULL;

-- base schema: 90003-499.base.sql
-- then: migrate start; migrate complete
-- as 90003-499, completed: a fill of a column added, reading a table the file makes and later renames, was folded into the add_column's up, which the backfill ran after the rename: start failed after DDL; it runs where it stands now (a fill is folded only when no later statement changes what it reads)
CREATE TYPE "Plan" AS ENUM ('active', 'inactive');
CREATE TABLE "item_v2" (
    "id" TEXT NOT NULL,
    "weight" JSONB,
    "updatedAt" JSONB,
    "kind" "Plan",
    CONSTRAINT "item_v2_pkey" PRIMARY KEY ("id")
);
ALTER TABLE "note" ADD COLUMN "item_v2Id" text;
UPDATE "note" SET "item_v2Id" = (SELECT min("id") FROM "item_v2");
ALTER TABLE "item_v2" RENAME TO "ledgers";

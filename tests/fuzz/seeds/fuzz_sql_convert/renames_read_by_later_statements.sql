ALTER TABLE "Item" RENAME CONSTRAINT "Item_owner_fkey" TO "Item_ownerId_fkey";
ALTER TABLE "Item" RENAME TO "Thing";
ALTER TABLE "Thing" RENAME CONSTRAINT "Item_ownerId_fkey" TO "Thing_ownerId_fkey";
ALTER TABLE "Item" RENAME COLUMN "ownerId" TO "oid";
ALTER TABLE "Item" ADD COLUMN "note" text NOT NULL DEFAULT 'none';
ALTER TABLE "Item" ALTER COLUMN "oid" SET DEFAULT 1;
ALTER TABLE "Item" RENAME TO "Thing";
ALTER TABLE "T" RENAME COLUMN "kind" TO "legacyKind";
ALTER TABLE "T" ADD COLUMN "kind" text;

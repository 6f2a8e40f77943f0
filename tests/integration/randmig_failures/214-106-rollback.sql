-- base schema: 214-106.base.sql
-- then: migrate start; migrate rollback
-- a table renamed twice and updated under its last name, and an INSERT that waits for complete (after a retype of its table), rolled back: the UPDATE's rows stay, the INSERT never ran
DROP INDEX "user_invoice_id_idx";
ALTER TABLE "task" DROP COLUMN "email";
ALTER TABLE "Invoice" RENAME TO "order_new";
ALTER TABLE "order_new" RENAME TO "order_new2";
ALTER INDEX "task_level_lower_idx" RENAME TO "task_level_lower_idx_r";
ALTER TABLE "task" ALTER COLUMN "slug" SET DATA TYPE text;
CREATE UNIQUE INDEX "order_new2_title_key" ON "order_new2"("title");
UPDATE "order_new2" SET "createdAt" = 1.13 WHERE "createdAt" IS NULL;
DROP INDEX CONCURRENTLY "order_new2_title_key";
ALTER TABLE "user" ADD CONSTRAINT "user_kind_key_75" UNIQUE ("kind");
CREATE TABLE "Comment_v2" (
    "id" SERIAL NOT NULL,
    "score" TEXT,
    CONSTRAINT "Comment_v2_pkey" PRIMARY KEY ("id")
);
INSERT INTO "task" ("kind", "slug", "parentId") SELECT "kind", "slug", "parentId" FROM "task" WHERE "id" <= 3;

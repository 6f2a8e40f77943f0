-- base schema: 214-59.base.sql
-- then: migrate start; migrate rollback
-- the runner's own (its first run of this stop): a column renamed and its name taken by a new column, rolled back; the runner, replaying the file's renames and adds on the base, dropped the new column, gave the old one its name back, then dropped that too
ALTER TABLE "task" RENAME COLUMN "code" TO "updatedAt8";
ALTER TABLE "task" ADD COLUMN "code" text;
UPDATE "note" SET "createdAt" = '2024-01-08 10:00:00+00' WHERE "createdAt" IS NULL;

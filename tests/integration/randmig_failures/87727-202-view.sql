-- base schema: 87727-202-view.base.sql
-- then: migrate start; migrate rollback
-- failure: (sibling of 87727-202) a view over a table the file makes, made before a type the table then takes a column of
CREATE TABLE "itemLog" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "score" TEXT,
    CONSTRAINT "itemLog_pkey" PRIMARY KEY ("id")
);
CREATE VIEW "itemLog_scores" AS SELECT "id", "score" FROM "itemLog";
CREATE TYPE "Plan" AS ENUM ('inactive', 'TWO', 'ONE');
ALTER TABLE "itemLog" ADD COLUMN "amount" "Plan" NOT NULL DEFAULT 'inactive';
ALTER TABLE "itemLog" ALTER COLUMN "score" SET DEFAULT 'none';

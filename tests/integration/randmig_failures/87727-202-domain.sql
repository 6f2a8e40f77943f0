-- base schema: 87727-202-domain.base.sql
-- then: migrate start; migrate rollback
-- failure: (sibling of 87727-202) a domain made after the table that takes a column of it: the rollback dropped the domain first
CREATE TABLE "itemLog" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "score" TEXT,
    CONSTRAINT "itemLog_pkey" PRIMARY KEY ("id")
);
CREATE DOMAIN "posint" AS integer CHECK (VALUE > 0);
ALTER TABLE "itemLog" ADD COLUMN "qty" "posint" NOT NULL DEFAULT 1;
CREATE TYPE "Plan" AS ENUM ('inactive', 'TWO', 'ONE');
ALTER TABLE "itemLog" ALTER COLUMN "score" SET DATA TYPE "Plan" USING "score"::"Plan";

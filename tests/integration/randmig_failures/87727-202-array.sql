-- base schema: 87727-202-array.base.sql
-- then: migrate start; migrate rollback
-- failure: (sibling of 87727-202) an enum made after the table that takes an array column of it
CREATE TABLE "itemLog" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    CONSTRAINT "itemLog_pkey" PRIMARY KEY ("id")
);
CREATE TYPE "Plan" AS ENUM ('inactive', 'TWO', 'ONE');
ALTER TABLE "itemLog" ADD COLUMN "plans" "Plan"[] NOT NULL DEFAULT '{}';

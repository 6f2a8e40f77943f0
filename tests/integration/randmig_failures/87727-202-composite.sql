-- base schema: 87727-202-composite.base.sql
-- then: migrate start; migrate rollback
-- failure: (sibling of 87727-202) a composite type over an enum, both made after the table that takes a column of the composite
CREATE TABLE "itemLog" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    CONSTRAINT "itemLog_pkey" PRIMARY KEY ("id")
);
CREATE TYPE "Plan" AS ENUM ('inactive', 'TWO', 'ONE');
CREATE TYPE "planned_at" AS ("plan" "Plan", "at" timestamptz);
ALTER TABLE "itemLog" ADD COLUMN "planned" "planned_at";

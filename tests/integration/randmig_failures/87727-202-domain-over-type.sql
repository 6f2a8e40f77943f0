-- base schema: 87727-202-domain-over-type.base.sql
-- then: migrate start; migrate rollback
-- failure: (sibling of 87727-202) a domain over a type the file makes, both made after the table that takes a column of the domain
CREATE TABLE "itemLog" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "score" TEXT,
    CONSTRAINT "itemLog_pkey" PRIMARY KEY ("id")
);
CREATE TYPE "Plan" AS ENUM ('inactive', 'TWO', 'ONE');
CREATE DOMAIN "planned" AS "Plan" NOT NULL DEFAULT 'inactive';
ALTER TABLE "itemLog" ADD COLUMN "plan" "planned";

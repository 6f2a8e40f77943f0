-- base schema: 87727-202.base.sql
-- then: migrate start; migrate rollback
-- failure: rollback exit 1: operations[N]: ERROR:  cannot drop type NAME because other objects depend on it
CREATE TABLE "itemLog" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "weight" BOOLEAN NOT NULL DEFAULT false,
    "score" TEXT,
    "slug" INTEGER,
    CONSTRAINT "itemLog_pkey" PRIMARY KEY ("id")
);
CREATE TYPE "Plan" AS ENUM ('inactive', 'TWO', 'ONE');
ALTER TABLE "itemLog" ADD COLUMN "amount" "Plan" NOT NULL DEFAULT 'inactive';

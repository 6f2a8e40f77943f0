-- base schema: 20261128-5.base.sql
-- then: migrate start; migrate complete
-- failure: complete exit 1: contract failed after N attempt(s): operations[N]: ERROR:  cannot drop function pgtandem.r20261128_5_0() because other objects depend on it
ALTER TABLE "Post" ALTER COLUMN "flags" SET DATA TYPE text USING "flags"::text;
ALTER TABLE "Post" RENAME TO "accountEntry";

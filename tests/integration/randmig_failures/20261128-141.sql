-- base schema: 20261128-141.base.sql
-- then: migrate start; migrate complete
-- failure: start exit 1, changed: False: N-N-N N:N:N.N UTC ERROR expand of r20261128_141 failed: operations[N]: ERROR:  column NAME of relation NAME does not exist; removing what it created
ALTER TABLE "ledger" ALTER COLUMN "slug" DROP DEFAULT;
ALTER TABLE "ledger" RENAME COLUMN "slug" TO "note22";

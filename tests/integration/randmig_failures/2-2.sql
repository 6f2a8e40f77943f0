-- base schema: 2-2.base.sql
-- then: migrate start; migrate complete
-- failure: start exit 1, changed: False: N-N-N N:N:N.N UTC ERROR expand of r2_2 failed: operations[N]: ERROR:  column NAME of relation NAME does not exist; removing what it created
ALTER TABLE "Invoice" ALTER COLUMN "payload" SET DEFAULT '2024-01-03 10:00:00+00';
ALTER TABLE "Invoice" DROP COLUMN "payload";

-- base schema: 7-163.base.sql
-- then: migrate start; migrate complete
-- failure: start exit 1, changed: False: N-N-N N:N:N.N UTC ERROR expand of r7_163 failed: operations[N]: ERROR:  operator does not exist: json = json\nLINE N: pgt_new_shape := coalesce((NEW.NAME IS DIS
ALTER TABLE "Session" ALTER COLUMN "ref" SET DATA TYPE json;
UPDATE "Session" SET "slug" = '{"k": 1, "s": "upd"}' WHERE "slug" IS NOT NULL;

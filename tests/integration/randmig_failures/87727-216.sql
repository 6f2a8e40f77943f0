-- base schema: 87727-216.base.sql
-- then: migrate start; migrate complete
-- failure: start exit 1, changed: False: N-N-N N:N:N.N UTC ERROR expand of r87727_216 failed: operations[N]: ERROR:  duplicate key value violates unique constraint NAME\nDETAIL:  Key (rank)=() already 
ALTER TABLE "item" ALTER COLUMN "rank" DROP DEFAULT;
INSERT INTO "item" ("kind", "createdAt", "meta") SELECT "kind", "createdAt", "meta" FROM "item" WHERE "id" <= 3;

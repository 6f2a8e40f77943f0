-- base schema: 73702-172.base.sql
-- then: migrate start; migrate rollback
-- failure: start exit 1, changed: False: N-N-N N:N:N.N UTC ERROR expand of r73702_172 failed: operations[N]: ERROR:  invalid input syntax for type bigint: NAME\nLINE N: UPDATE NAME SET NAME = 'V' WHERE
ALTER TABLE "note" ALTER COLUMN "body" SET DATA TYPE text USING "body"::text;
UPDATE "note" SET "body" = 'upd-2' WHERE "body" IS NOT NULL;

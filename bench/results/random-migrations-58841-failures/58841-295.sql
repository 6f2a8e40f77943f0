-- base schema: 58841-295.base.sql
-- then: migrate start; migrate complete
-- failure: start exit 1, changed: False: N-N-N N:N:N.N UTC ERROR expand of r58841_295 failed: operations[N]: ERROR:  function length(jsonb) does not exist\nHINT:  No function matches the given name and
ALTER TABLE "team" RENAME TO "users";
ALTER TABLE "users" RENAME COLUMN "body" TO "level";
ALTER TABLE "users" ADD COLUMN "body" text;
ALTER TABLE "users" ADD CONSTRAINT "users_body_check" CHECK (length("body") < 200);

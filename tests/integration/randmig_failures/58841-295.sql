-- base schema: 58841-295.base.sql
-- then: migrate start; migrate complete
-- seed 58841's file 295: RENAME COLUMN body TO level, ADD COLUMN body text, then a CHECK on body: the CHECK was made on the renamed jsonb column, which has the name until the contract (start failed after DDL); a key, an index or a CHECK naming a column added under a name a rename frees is made on that column's second column
ALTER TABLE "team" RENAME TO "users";
ALTER TABLE "users" RENAME COLUMN "body" TO "level";
ALTER TABLE "users" ADD COLUMN "body" text;
ALTER TABLE "users" ADD CONSTRAINT "users_body_check" CHECK (length("body") < 200);

-- base schema: 40427-212.base.sql
-- then: migrate start; migrate complete
-- seed 40427 (failure: expand failed writing the renamed boolean column, "invalid input syntax for type boolean"): an UPDATE of a column added under a name a rename frees, naming the table by the name a later RENAME TO gives it with an `sql` statement between; it writes the added column, online and identical
ALTER TABLE "note" RENAME COLUMN "flags" TO "flag";
ALTER TABLE "note" ADD COLUMN "flags" text;
CREATE TYPE "Status" AS ENUM ('TWO', 'active');
ALTER TABLE "note" RENAME TO "userEntry";
ALTER TABLE "userEntry" RENAME CONSTRAINT "note_pkey" TO "userEntry_pkey";
UPDATE "userEntry" SET "flags" = 'upd-8';

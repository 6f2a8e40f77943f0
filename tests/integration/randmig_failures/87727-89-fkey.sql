-- base schema: 87727-89-fkey.base.sql
-- then: migrate start; migrate rollback
-- the class of 87727-89: a foreign key column dropped and added again (its key, its index and a multi-column partial index go with it offline), rolled back: the old column and all it had stay
ALTER TABLE "Post" DROP COLUMN "team_id";
ALTER TABLE "Post" ADD COLUMN "team_id" INTEGER;

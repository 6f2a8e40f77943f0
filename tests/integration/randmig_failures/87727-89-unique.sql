-- base schema: 87727-89-unique.base.sql
-- then: migrate start; migrate complete
-- the class of 87727-89: every kind of dependent of a column dropped and added again under its name (multi-column UNIQUE, partial index on another column, CHECKs of one and two columns, extended statistics, comment, statistics target, default) goes with the old column as offline, the new one NOT NULL with a default of its own
ALTER TABLE "Post" DROP COLUMN "payload";
ALTER TABLE "Post" ADD COLUMN "payload" VARCHAR(20) NOT NULL DEFAULT 'none';

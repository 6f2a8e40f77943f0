-- base schema: 90003-113.base.sql
-- then: migrate start; migrate rollback
-- seed 90003's file 114 (shortened): a DO block making a type named like a column of a table made above was refused; a column's name is no type's
CREATE TABLE "user_v2" ("id" SERIAL NOT NULL, "level" JSONB, CONSTRAINT "user_v2_pkey" PRIMARY KEY ("id"));
DO $$ BEGIN
  CREATE TYPE "level" AS ENUM ('active', 'FOUR', 'ONE');
EXCEPTION
  WHEN duplicate_object THEN null;
END $$;

-- base schema: 214-261.base.sql
-- then: migrate start; migrate complete
-- a column renamed twice, another table's statement, then the column retyped: refused before DDL (its up would read the name it has after the renames)
ALTER TABLE "tag" RENAME COLUMN "ref" TO "code";
ALTER TABLE "tag" RENAME COLUMN "code" TO "updatedAt";
DELETE FROM "Profile" WHERE "id" % 7 = 3;
ALTER TABLE "tag" ALTER COLUMN "updatedAt" SET DATA TYPE text USING "updatedAt"::text;

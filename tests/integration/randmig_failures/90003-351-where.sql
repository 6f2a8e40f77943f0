-- base schema: 90003-351.base.sql
-- then: migrate start; migrate complete
-- a sibling of 90003-351: the added column named only in the WHERE of an UPDATE of another column (rows differed)
ALTER TABLE "task" RENAME COLUMN "level" TO "kind7";
ALTER TABLE "task" ADD COLUMN "level" text DEFAULT 'd';
UPDATE "task" SET "title" = 5 WHERE "level" IS NOT NULL AND "a" % 2 = 0;

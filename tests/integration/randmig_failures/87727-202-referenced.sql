-- base schema: 87727-202-referenced.base.sql
-- then: migrate start; migrate rollback
-- failure: (sibling of 87727-202) a table the file makes, referenced by a foreign key of another it makes, then given a column of a type made after both: the rollback restores the column's type before the type's drop (the table's drop would meet the foreign key)
CREATE TABLE "itemLog" (
    "id" INTEGER NOT NULL,
    "score" TEXT,
    CONSTRAINT "itemLog_pkey" PRIMARY KEY ("id")
);
CREATE TABLE "itemNote" (
    "id" INTEGER NOT NULL,
    "item_id" INTEGER REFERENCES "itemLog" ("id"),
    CONSTRAINT "itemNote_pkey" PRIMARY KEY ("id")
);
CREATE TYPE "Plan" AS ENUM ('inactive', 'TWO', 'ONE');
ALTER TABLE "itemLog" ALTER COLUMN "score" SET DATA TYPE "Plan" USING "score"::"Plan";
ALTER TABLE "itemLog" ADD CONSTRAINT "itemLog_score_check" CHECK ("score" <> 'TWO');

-- base schema: 31415-225.base.sql
-- then: migrate start; migrate rollback
-- failure: rollback schema differs: +    'NEW',
ALTER TYPE "mood" RENAME TO "moodType";
ALTER TYPE "moodType" RENAME TO "moodTypeType";
ALTER TYPE "moodTypeType" ADD VALUE 'NEW' BEFORE 'open';

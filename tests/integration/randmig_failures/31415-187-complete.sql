-- base schema: 31415-187.base.sql
-- then: migrate start; migrate complete
-- the class of 31415-187: an enum change after a rename of its type in the same file, completed: the value where Postgres puts it, the type under its new name
ALTER TYPE "Priority" RENAME TO "PriorityType";
ALTER TYPE "PriorityType" ADD VALUE 'NEW' AFTER 'MEDIUM';

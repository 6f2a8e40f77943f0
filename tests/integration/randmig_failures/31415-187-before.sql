-- base schema: 31415-187.base.sql
-- then: migrate start; migrate rollback
-- the class of 31415-187: an enum change after a rename of its type in the same file: ADD VALUE BEFORE goes to the type under the name it has at expand (the rename runs at complete), and the rollback keeps it there
ALTER TYPE "Priority" RENAME TO "PriorityType";
ALTER TYPE "PriorityType" ADD VALUE 'NEW' BEFORE 'LOW';

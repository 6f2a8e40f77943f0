-- base schema: 31415-187.base.sql
-- then: migrate start; migrate rollback
-- the class of 31415-187: the value added first, the type renamed after it: the rollback keeps the value in the type under its old name
ALTER TYPE "Priority" ADD VALUE 'NEW';
ALTER TYPE "Priority" RENAME TO "PriorityType";

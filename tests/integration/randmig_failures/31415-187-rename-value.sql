-- base schema: 31415-187.base.sql
-- then: migrate start; migrate rollback
-- the class of 31415-187: an enum change after a rename of its type in the same file: RENAME VALUE, refused before any DDL (the label would reach both releases at once)
ALTER TYPE "Priority" RENAME TO "PriorityType";
ALTER TYPE "PriorityType" RENAME VALUE 'HIGH' TO 'CRITICAL';

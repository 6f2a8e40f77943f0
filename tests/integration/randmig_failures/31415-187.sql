-- base schema: 31415-187.base.sql
-- then: migrate start; migrate rollback
-- failure: rollback schema differs: -    'URGENT' | +    'URGENT', | +    'NEW'
ALTER TYPE "Priority" RENAME TO "PriorityType";
ALTER TYPE "PriorityType" ADD VALUE 'NEW';

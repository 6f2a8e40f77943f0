-- base schema: 73702-1.base.sql
-- then: migrate start; migrate complete
-- failure: start exit 1, changed: False: N-N-N N:N:N.N UTC ERROR expand of r73702_1 failed: operations[N]: ERROR:  referenced relation NAME is not a table; removing what it created
ALTER TABLE "tag" RENAME TO "SessionEntry";
ALTER TABLE "SessionEntry" RENAME COLUMN "parentId" TO "title";
ALTER TABLE "SessionEntry" RENAME COLUMN "title" TO "payload";

-- base schema: 20261128-93.base.sql
-- then: migrate start; migrate complete
-- failure: start exit 1, changed: True: operations[N]: ERROR:  ALTER action VALIDATE CONSTRAINT cannot be performed on relation NAME
ALTER TABLE "team" ADD CONSTRAINT "team_parentId_check" CHECK ("parentId" >= 0);
ALTER TABLE "team" RENAME TO "eventEntry";

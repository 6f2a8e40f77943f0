-- base schema: 90003-108.base.sql
-- then: migrate start; migrate complete
-- as 90003-108, completed
ALTER TABLE "account" RENAME TO "userEntry";
ALTER TABLE "userEntry" ADD COLUMN "teamId" integer;
DO $$ BEGIN
  ALTER TABLE "userEntry" ADD CONSTRAINT "userEntry_teamId_fkey" FOREIGN KEY ("teamId") REFERENCES "team"("id") ON DELETE SET NULL ON UPDATE CASCADE;
EXCEPTION
  WHEN duplicate_object THEN null;
END $$;

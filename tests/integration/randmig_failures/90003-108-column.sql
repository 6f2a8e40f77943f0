-- base schema: 90003-108.base.sql
-- then: migrate start; migrate complete
-- a sibling of 90003-108: a column of the key's table renamed above (was refused)
ALTER TABLE "account" RENAME COLUMN "score" TO "scored";
ALTER TABLE "account" ADD COLUMN "teamId" integer;
DO $$ BEGIN
  ALTER TABLE "account" ADD CONSTRAINT "userEntry_teamId_fkey" FOREIGN KEY ("teamId") REFERENCES "team"("id") ON DELETE SET NULL ON UPDATE CASCADE;
EXCEPTION
  WHEN duplicate_object THEN null;
END $$;

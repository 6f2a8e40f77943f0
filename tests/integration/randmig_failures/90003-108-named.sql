-- base schema: 90003-108.base.sql
-- then: migrate start; migrate complete
-- a sibling of 90003-108: the key made above under the key's name, which the catalog before the file cannot tell: stays refused
ALTER TABLE "account" RENAME TO "userEntry";
ALTER TABLE "userEntry" ADD COLUMN "teamId" integer;
ALTER TABLE "userEntry" ADD CONSTRAINT "userEntry_teamId_fkey" FOREIGN KEY ("teamId") REFERENCES "team"("id");
DO $$ BEGIN
  ALTER TABLE "userEntry" ADD CONSTRAINT "userEntry_teamId_fkey" FOREIGN KEY ("teamId") REFERENCES "team"("id") ON DELETE SET NULL ON UPDATE CASCADE;
EXCEPTION
  WHEN duplicate_object THEN null;
END $$;

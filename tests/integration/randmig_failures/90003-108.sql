-- base schema: 90003-108.base.sql
-- then: migrate start; migrate rollback
-- seed 90003's file 109 (shortened): a DO ... EXCEPTION WHEN duplicate_object block adding a key to a table renamed above was refused; the key is looked up under the table's name before the file
ALTER TABLE "account" RENAME TO "userEntry";
ALTER TABLE "userEntry" ADD COLUMN "teamId" integer;
DO $$ BEGIN
  ALTER TABLE "userEntry" ADD CONSTRAINT "userEntry_teamId_fkey" FOREIGN KEY ("teamId") REFERENCES "team"("id") ON DELETE SET NULL ON UPDATE CASCADE;
EXCEPTION
  WHEN duplicate_object THEN null;
END $$;

ALTER TABLE "notes" ADD COLUMN "tag" text;
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'notes_check_id_fkey') THEN
    ALTER TABLE "notes" ADD CONSTRAINT "notes_check_id_fkey" FOREIGN KEY ("check_id") REFERENCES "checks"("id");
  ELSIF EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'notes' AND column_name = 'x') THEN
    CREATE INDEX "notes_x_idx" ON "notes" ("x");
  ELSE
    ALTER TABLE "notes" ADD COLUMN "score" integer DEFAULT 0; -- a comment
  END IF;
END $$;
DO $$ BEGIN
 CREATE TYPE "public"."role" AS ENUM('admin', 'member');
EXCEPTION
 WHEN duplicate_object THEN null;
END $$;
--> statement-breakpoint
DO $$ BEGIN
 ALTER TABLE "memberships" ADD CONSTRAINT "m_fk" FOREIGN KEY ("note_id") REFERENCES "public"."notes"("id") ON DELETE cascade;
EXCEPTION
 WHEN duplicate_object THEN null;
END $$;

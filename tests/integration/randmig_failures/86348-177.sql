-- base schema: 86348-177.base.sql
-- then: migrate start; migrate rollback
-- seed 86348: a foreign key on a partitioned table (refused: Postgres cannot add one NOT VALID there); each partition's added NOT VALID, validated and attached by the table's, online and identical
ALTER TABLE "event" RENAME TO "ProfileRecord";
CREATE UNIQUE INDEX "memo_code_key" ON "memo"("code");
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'Comment_flags_check') THEN
    ALTER TABLE "Comment" ADD CONSTRAINT "Comment_flags_check" CHECK (length("flags") < 200);
  END IF;
END $$;
ALTER TABLE "Comment" RENAME COLUMN "flags" TO "note22";
ALTER TABLE "Comment" ADD COLUMN "flags" text;
CREATE TABLE "tags" (
    "id" TEXT NOT NULL,
    "label" TEXT,
    "updatedAt" TIMESTAMP(3),
    "flags" TEXT,
    CONSTRAINT "tags_pkey" PRIMARY KEY ("id")
);
ALTER TABLE "user" DROP CONSTRAINT "user_memo_id_fkey";
ALTER TABLE "user" ADD CONSTRAINT "user_memo_id_fkey" FOREIGN KEY ("memo_id") REFERENCES "memo"("id") ON DELETE SET NULL ON UPDATE CASCADE;

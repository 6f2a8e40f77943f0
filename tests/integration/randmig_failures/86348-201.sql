-- base schema: 86348-201.base.sql
-- then: migrate start; migrate complete
-- seed 86348: a partitioned table's index dropped and made again under its name (refused); built under temporary names, renamed after the drop, online and identical
CREATE UNIQUE INDEX "memo_rank_key" ON "memo"("rank");
ALTER TABLE "team" ALTER COLUMN "email" SET DATA TYPE varchar(200) USING "email"::varchar(200);
UPDATE "note" SET "body" = 24 WHERE "body" IS NOT NULL;
ALTER TABLE "team" DROP COLUMN "level";
DROP INDEX CONCURRENTLY "memo_rank_lower_idx";
CREATE TYPE "Status" AS ENUM ('THREE', 'inactive', 'TWO');
CREATE TABLE "eventLog" (
    "id" TEXT NOT NULL,
    "rank" TIMESTAMP(3),
    "level" JSONB,
    "score" TIMESTAMP(3),
    "kind" "Status",
    CONSTRAINT "eventLog_pkey" PRIMARY KEY ("id")
);
UPDATE "Profile" SET "meta" = ARRAY['a0', 'b6'] WHERE "meta" IS NOT NULL;
DROP INDEX "task_note_id_idx";
CREATE INDEX "task_note_id_idx" ON "task"("at");
ALTER TABLE "eventLog" ADD COLUMN "teamId" integer;
ALTER TABLE "eventLog" ADD CONSTRAINT "eventLog_teamId_fkey" FOREIGN KEY ("teamId") REFERENCES "team"("id");

-- base schema: 86348-43.base.sql
-- then: migrate start; migrate complete
-- seed 86348: a foreign key on a partitioned table (refused: Postgres cannot add one NOT VALID there); each partition's added NOT VALID, validated and attached by the table's, online and identical
ALTER TABLE "memo" ALTER COLUMN "body" SET DEFAULT ARRAY['a2', 'b2'];
ALTER TABLE "event" RENAME TO "memos";
ALTER TABLE "memos" RENAME TO "memos2";
ALTER TABLE "memos2" ALTER COLUMN "slug" SET DATA TYPE text USING array_to_string("slug", ',');
ALTER TABLE "memo" ALTER COLUMN "code" DROP NOT NULL;
CREATE TABLE "task_v2" (
    "id" SERIAL NOT NULL,
    "meta" TIMESTAMP(3),
    "slug" INTEGER,
    "title" INTEGER,
    CONSTRAINT "task_v2_pkey" PRIMARY KEY ("id")
);
ALTER TABLE "task" ALTER COLUMN "meta" SET DEFAULT ARRAY['a2', 'b2'];
ALTER TABLE "task" RENAME TO "PostEntry";
ALTER TABLE "PostEntry" RENAME CONSTRAINT "task_pkey" TO "PostEntry_pkey";
ALTER TABLE "PostEntry" RENAME CONSTRAINT "task_account_id_fkey" TO "PostEntry_account_id_fkey";
ALTER TABLE "memo" DROP CONSTRAINT "memo_event_id_fkey";
ALTER TABLE "memo" ADD CONSTRAINT "memo_event_id_fkey" FOREIGN KEY ("event_id") REFERENCES "memos2"("id") ON DELETE CASCADE ON UPDATE CASCADE;

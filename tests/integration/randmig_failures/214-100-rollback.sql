-- base schema: 214-100.base.sql
-- then: migrate start; migrate rollback
-- seed 214's file 100 (refused before): a table renamed before its column is retyped (the old type read under the name before the file), renamed twice (the plan follows both renames back)
CREATE TYPE "Status" AS ENUM ('pending', 'TWO');
ALTER TABLE "memo" ADD COLUMN "code" "Status";
ALTER TABLE "event" RENAME TO "Posts";
ALTER TABLE "Posts" ALTER COLUMN "kind" DROP NOT NULL;
ALTER TABLE "Posts" ALTER COLUMN "kind" SET DATA TYPE bigint;
DROP INDEX "memo_notes_idx";
ALTER TABLE "Posts" RENAME COLUMN "ref" TO "flag";
ALTER TABLE "Posts" ADD COLUMN "ref" text;
ALTER TABLE "memo" ADD COLUMN "postsId" bigint;
ALTER TABLE "memo" ADD CONSTRAINT "memo_postsId_fkey" FOREIGN KEY ("postsId") REFERENCES "Posts"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

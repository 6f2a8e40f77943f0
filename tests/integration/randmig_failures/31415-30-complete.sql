-- base schema: 31415-30.base.sql
-- then: migrate start; migrate complete
-- seed 31415's file 30: a column renamed, its table renamed twice, then the column retyped (Prisma's enum recreation) with statements between: refused before DDL (its up would read the name the column has only after the contract; run to complete it differed)
ALTER TABLE "user" RENAME COLUMN "notes" TO "note2";
ALTER TABLE "note" ADD CONSTRAINT "note_tag_id_key" UNIQUE ("tag_id");
ALTER TABLE "user" RENAME TO "items";
ALTER TABLE "items" RENAME TO "items2";
ALTER TABLE "order" ALTER COLUMN "status" SET DATA TYPE double precision USING "status"::double precision;
UPDATE "items2" SET "note2" = 'open' WHERE "note2" = 'held';
CREATE TYPE "mood_new" AS ENUM ('open', 'closed');
ALTER TABLE "items2" ALTER COLUMN "note2" TYPE "mood_new" USING ("note2"::text::"mood_new");
DROP TYPE "mood";
ALTER TYPE "mood_new" RENAME TO "mood";

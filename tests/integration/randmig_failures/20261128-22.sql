-- base schema: 20261128-22.base.sql
-- then: migrate start; migrate complete
-- failure: schema differs: -    note2 text NOT NULL | +    note2 text
CREATE TYPE "Kind" AS ENUM ('TWO', 'active', 'ONE', 'pending');
ALTER TABLE "item" ADD COLUMN "note2" "Kind" NOT NULL DEFAULT 'TWO';
ALTER TABLE "item" ALTER COLUMN "note2" DROP DEFAULT;
ALTER TABLE "item" ALTER COLUMN "note2" SET DATA TYPE text USING "note2"::text;

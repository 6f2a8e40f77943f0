-- base schema: 87727-130.base.sql
-- then: migrate start; migrate complete
-- failure: schema differs: +CREATE INDEX memo_level_idx ON public.memo USING btree (level);
ALTER TABLE "memo" DROP COLUMN "level";
ALTER TABLE "memo" ADD COLUMN "level" TEXT;

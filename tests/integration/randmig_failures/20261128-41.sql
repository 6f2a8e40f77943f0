-- base schema: 20261128-41.base.sql
-- then: migrate start; migrate complete
-- failure: schema differs: -    kind boolean NOT NULL | +    kind boolean
ALTER TABLE "team" ALTER COLUMN "kind" DROP NOT NULL;
ALTER TABLE "team" ALTER COLUMN "kind" SET NOT NULL;

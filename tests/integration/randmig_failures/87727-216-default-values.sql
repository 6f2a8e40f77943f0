-- base schema: 87727-216.base.sql
-- then: migrate start; migrate complete
-- the class of 87727-216: a default given to a NOT NULL column above an INSERT ... DEFAULT VALUES, which offline takes it
ALTER TABLE "Invoice" ALTER COLUMN "flags" SET DEFAULT '2024-01-01 00:00:00+00';
INSERT INTO "Invoice" DEFAULT VALUES;

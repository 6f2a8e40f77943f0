-- base schema: 87727-202-fk.base.sql
-- then: migrate start; migrate rollback
-- failure: (sibling of 87727-202) a table made after another, which a foreign key added to the first then references: the rollback dropped the referenced table first
CREATE TABLE "itemLog" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "plan_id" INTEGER,
    CONSTRAINT "itemLog_pkey" PRIMARY KEY ("id")
);
CREATE TABLE "planRow" (
    "id" INTEGER NOT NULL,
    CONSTRAINT "planRow_pkey" PRIMARY KEY ("id")
);
ALTER TABLE "itemLog" ADD CONSTRAINT "itemLog_plan_id_fkey" FOREIGN KEY ("plan_id") REFERENCES "planRow" ("id") ON DELETE SET NULL;

-- base schema: 2-3.base.sql
-- then: migrate start; migrate complete
-- failure: schema differs: -    'GUEST', | -    'BLOCKED' | +    'GUEST'
CREATE TYPE "Role_new" AS ENUM ('ADMIN', 'GUEST');
DROP TYPE "Role";
ALTER TYPE "Role_new" RENAME TO "Role";
ALTER TYPE "Role" ADD VALUE 'BLOCKED';

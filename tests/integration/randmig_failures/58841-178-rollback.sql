-- base schema: 58841-295.base.sql
-- then: migrate start; migrate rollback
-- a sibling of 58841-178, rolled back: a table the file makes, a column added to it, then CREATE INDEX CONCURRENTLY on it: refused, saying to write it without CONCURRENTLY; it runs at expand without the word, where no release uses the table yet
CREATE TABLE "InvoiceLog" (
    "id" SERIAL NOT NULL,
    "ref" TIMESTAMP(3),
    CONSTRAINT "InvoiceLog_pkey" PRIMARY KEY ("id")
);
ALTER TABLE "InvoiceLog" ADD COLUMN "title7" uuid;
CREATE INDEX CONCURRENTLY "InvoiceLog_title7_idx" ON "InvoiceLog"("title7");
create unique index concurrently if not exists "concurrently" on "InvoiceLog" (id) where title7 is not null;

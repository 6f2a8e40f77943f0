/* The rehearsal of a change of a column's type: before anything changes,
 * Postgres itself is asked whether each CHECK constraint, index with an
 * expression / predicate / INCLUDE columns / operator class / access method,
 * and view or materialized view reading the column still holds on the new
 * type, and how each reads once written over the second column. Everything
 * runs in transactions that are always rolled back, so nothing is left.
 *
 * Why Postgres and not string edits: a constraint, an index and a view are
 * bound to column numbers, and Postgres prints them back with the current
 * column names. So:
 *  - CHECK: added to an empty temporary copy of the table whose column has
 *    the new type (this is the type check: an offline ALTER COLUMN ... TYPE
 *    re-parses it the same way), then the column is renamed to the second
 *    column's name and pg_get_constraintdef gives the definition to add at
 *    expand (NOT VALID, validated after the backfill, renamed at contract).
 *  - Indexes: the same, with CREATE INDEX on the copy and pg_get_indexdef
 *    read back; the plan builds it CONCURRENTLY under a temporary name and
 *    renames it at contract, like a simple index.
 *  - Views and materialized views: an offline ALTER COLUMN ... TYPE refuses
 *    while they exist, so the offline equivalent is to drop them, change
 *    the column and create them again. Their definitions (with options,
 *    grants, comments, owner, and a materialized view's indexes) are read at
 *    start, with those of the views reading them at any depth; the rehearsal then does, on the real table, in a transaction
 *    that is rolled back, what the contract will do: add a column of the new
 *    type, drop the views, drop the column, give the new one its name,
 *    create the views again. This takes the table's lock for a moment
 *    (catalog changes only), asked for with the contract's short
 *    lock_timeout and tried again with backoff, so that no lock request
 *    queues the application behind it for long. The contract repeats it
 *    for real.
 * What Postgres refuses is recorded as the dependent's refusal and the plan
 * refuses the operation with it (exit 2) before the first DDL. */
#ifndef PGTANDEM_MIGRATION_DEPENDENTS_H
#define PGTANDEM_MIGRATION_DEPENDENTS_H

#include <libpq-fe.h>
#include <stddef.h>

#include "migration.h"
#include "migration_catalog.h"

/* Fills carry / carry_drop / refusal of the dependents of every column that
 * an alter_column, or a rename_column changing type or values, moves to a
 * second column. Returns 0, or -1 with err (the database could not be
 * asked, e.g. the table's lock was not granted in time). */
int mig_dependents_rehearse(PGconn *conn, const struct migration *m, struct mig_catalog *cat,
                            char *err, size_t errlen);

#endif

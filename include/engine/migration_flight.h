/* Several migrations in flight at once, pure (no I/O): which start,
 * complete, finalize, revert and rollback the chain allows, and which
 * migration's shape a release that declared a name sees.
 *
 * The chain is made by the files' parents: a migration whose parent is in
 * flight expands on top of that parent's new shape, and a release built
 * with it (pgtandem.version=<name>) sees every shape of its ancestry in
 * flight. Tables decide what must wait for what: a migration that changes
 * a table a migration in flight changes must be built on it (its parent
 * is the newest of that line), completes after it and is rolled back
 * before it; one on other tables keeps its own schedule.
 *
 * migration_lifecycle.h keeps the rules of one migration's phases; these
 * are the rules between migrations, asked after those. Unit tests:
 * tests/unit/test_migration_flight.c. */
#ifndef PGTANDEM_MIGRATION_FLIGHT_H
#define PGTANDEM_MIGRATION_FLIGHT_H

#include <stddef.h>

#include "migration.h"
#include "migration_lifecycle.h"
#include "migration_plan.h"

/* More than this many in flight is refused: each is a version schema, a
 * trigger per table it changes and a backfill sharing one budget. */
#define MIG_FLIGHT_MAX 8

/* What stands for every table: a step that names none (an enum's label,
 * an index dropped by its name, an `sql` statement other than a plain
 * read, write or table DDL) may touch any of them. */
#define MIG_FLIGHT_EVERY_TABLE "*"

/* One migration in flight as the table of record knows it. */
struct mig_flight {
    const char *name;
    const char *parent;         /* NULL: none declared */
    enum mig_phase phase;
    const char *const *tables;  /* the tables it changes ("schema.table"), as the plan names them */
    size_t ntables;
    int adds_only;              /* mig_adds_only: a migration of its tables may be built on it */
    const char *const *named;   /* the tables its operations name (tables, less those only its plan's
                                 * statements touch) */
    size_t nnamed;
};

/* 1 when every operation of m only adds to the tables it names
 * (add_column, create_index, create_table): its new shape of each table
 * is the table itself, every column under its own name, so a migration
 * built on it plans on the table as it is, and its triggers have no
 * `down` to run after a newer one's. */
int mig_adds_only(const struct migration *m);

/* Calls each(name, changes, arg) for every column op names or reads:
 * the columns it adds, renames (under both names), retypes, drops or
 * indexes, and those its expressions read (through Postgres's parser).
 * changes is 1 for a column whose name or values it changes for the
 * releases before it (rename_column's from, alter_column's and
 * drop_column's column). name is "*" when op may read any column of its
 * table: an expression that reads the whole row (`*`, or the row by the
 * table's name) or that the parser does not take, or an operation of
 * another kind. */
void mig_op_columns(const struct mig_op *op, void (*each)(const char *name, int changes, void *arg), void *arg);

/* The column a rename_column, alter_column or drop_column changes under
 * its name before it (rename_column's from), else NULL. */
const char *mig_op_column(const struct mig_op *op);

/* 1 for the operations that change a table by its columns alone
 * (add_column, create_index, rename_column, alter_column, drop_column):
 * the ones a migration may run on a table whose shape it is built on. */
int mig_op_kind_on_columns(enum mig_op_kind kind);

/* How a column an operation names (mig_op_columns' name) clashes with a
 * migration below it on that table: changed_below, it renames, retypes
 * or drops that column; below_changes, it changes some column. Changing a
 * column the one below only names (reads in a trigger, indexes) is no
 * clash: the triggers of the one above then run their `down`s before
 * the one below's and their `up`s after (plan_trigger.c). */
enum mig_clash { MIG_CLASH_NONE, MIG_CLASH_NAMES_CHANGED, MIG_CLASH_READS_ROW };
enum mig_clash mig_column_clash(const char *name, int changed_below, int below_changes);

/* 1 when op may retype its column in place at its complete (a type
 * without up or down: Postgres decides at start whether it takes it in
 * the catalog alone), an ALTER COLUMN ... TYPE that no view may read the
 * column across, so no migration is built on its shape of the table. */
int mig_op_retypes_in_place(const struct mig_op *op);

/* 1 for a rename_column that keeps the column as it is (no type, up,
 * down, copy or default): its contract only renames it in the catalog,
 * so a migration built on it that names the new name may rename the
 * column in the table at its own expand instead (plan_on_shape.c,
 * "brought forward"), and this one's contract then finds it done. */
int mig_op_renames_plainly(const struct mig_op *op);
/* Whether another operation of m on op's table names op's from or to
 * (a rename that acts in m's contract alone must be the only one). */
int mig_rename_named_elsewhere(const struct migration *m, const struct mig_op *op);

/* The rule plan_on_shape.c keeps at each start, read from the two files
 * alone: 0 when m, built on o, may change `table` ("schema.table"), which
 * o does more than add to: m only adds, renames, retypes and drops
 * columns there, names no column o renames, retypes or drops (the new
 * name of a plain rename aside: brought forward; and a plain rename of a
 * column o retypes into a second column, which no other operation of m
 * names: it acts in m's contract alone), and o retypes none in place. 1
 * with why set otherwise (o doing more there than change columns counts
 * as a change of every column). For start DIR, whose files are all
 * checked before the first one starts. */
int mig_flight_columns_apart(const struct migration *m, const struct migration *o, const char *table, char *why,
                             size_t cap);

/* The table m shares with o that keeps m from being built on o there: o
 * does more to it than add (unless on_shape and the operations of both
 * name it: m is then planned on o's shape of the table, read from the
 * database, and the plan refuses a column o changes or names that m
 * changes: plan_on_shape.c; a table only a plan's statements touch, such
 * as a foreign key carried to a retyped column, is not judged by
 * column), or the table stands for every one (a step of either names
 * none; *any is then set). NULL when they share none, or m may be built
 * on o (mig_flight_admit then asks that o is below m). */
const char *mig_flight_unbuildable_table(const struct mig_flight *m, const struct mig_flight *o, int on_shape,
                                         int *any);

/* 0 when request q on m may go ahead with `flight` in flight (oldest
 * first); else the HTTP status (404, 409) with why. For MIG_REQ_START m is
 * the migration to start (not in flight yet); for the others one of
 * `flight`. cascade: a rollback that takes the migrations built on m with
 * it, newest first. mig_admit's rules for m's own phase come first and are
 * not repeated here. */
int mig_flight_admit(const struct mig_flight *flight, size_t n, enum mig_request q, const struct mig_flight *m,
                     int cascade, char *why, size_t cap);

/* 1 when a is an ancestor of b through parents in flight (a is b's parent,
 * or its parent's, ...). */
int mig_flight_below(const struct mig_flight *flight, size_t n, const struct mig_flight *a,
                     const struct mig_flight *b);

/* The migrations in flight a release that declared `declared` (NULL or a
 * name not in flight: none) sees the new shape of: bit i set for
 * flight[i]. Every other one shows it its old shape. */
unsigned mig_flight_seen(const struct mig_flight *flight, size_t n, const char *declared);

/* The first table both change, or NULL; a step that names no table shares
 * every one (said as the other's table when it has one). */
const char *mig_flight_shared_table(const struct mig_flight *a, const struct mig_flight *b);
/* The first of set[0..n) sharing a table with m (its index; the table in
 * *table), or -1. */
int mig_flight_first_shared(const struct mig_flight *set, size_t n, const struct mig_flight *m, const char **table);

/* The tables m changes or references, each once, into *out (owned:
 * mig_flight_tables_free), as "schema.table", unquoted: the tables its
 * operations name, the tables its foreign keys point at (their keys must
 * stay as m found them), an `sql` step's tables read from its statements
 * by Postgres's parser, and, with its plan (NULL: none yet), every table
 * the plan's statements name (another table's foreign key carried to a
 * retyped column); pgtandem's own schemas left out.
 * MIG_FLIGHT_EVERY_TABLE once for a step that names no table. -1 when out
 * of memory. */
int mig_flight_tables(const struct migration *m, const struct mig_plan *plan, char ***out, size_t *n);
void mig_flight_tables_free(char **tables, size_t n);

#endif

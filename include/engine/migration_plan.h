/* SQL generation: turns a validated migration (plus, when available, a
 * catalog snapshot) into the exact SQL of every phase. This is what
 * `migrate plan` prints and what the engine executes; it does no I/O, so the
 * proxy can later send the same statements asynchronously.
 *
 * The two-shape rules (what operators can rely on; doc/migrations.md "The tandem rule"):
 *  - Triggers are BEFORE INSERT OR UPDATE, FOR EACH ROW, and only ever
 *    assign NEW, so they never recurse. The writer's shape is the first
 *    schema of its search_path (the proxy routes every session): the
 *    version schema is the new shape, pgtandem_<name>_old the old one. A
 *    session routed to neither bypasses the views: pgtandem.version equal to
 *    the migration's name makes it a new-shape writer, otherwise what it
 *    wrote decides (only the new column given or changed: new shape).
 *  - An old-shape write gets the new columns from `up`, a new-shape write
 *    the old columns from `down` (rename_column and alter_column: the
 *    second column; add_column: its `up`; drop_column: its `down`): on
 *    every INSERT, and on an UPDATE that changes a column the expression
 *    reads or finds its target still NULL.
 *  - A default Postgres would write into every row (volatile) is added
 *    without it, set for new rows, and backfilled.
 *  - The backfill session sets pgtandem.backfill=on, which the triggers'
 *    WHEN clause skips, and session_replication_role=replica where
 *    permitted. It fills rows whose new column is NULL while `up` gives a
 *    value: every write after expand passes through the triggers, so such
 *    a row has not been written since expand and a value the application
 *    wrote is never overwritten. New columns are added without a default
 *    (the default is set separately) so pre-existing rows stay
 *    recognisable.
 *  - A same-type rename moves no data: the views name the column, the
 *    contract renames it ("copy": true adds a copy column for writers that
 *    bypass the views).
 *
 * Schema fidelity: `start` + `complete` ends in the schema the offline DDL
 * (ALTER TABLE ... RENAME COLUMN / ALTER COLUMN ... TYPE ... USING / DROP
 * COLUMN, CREATE INDEX, ...) would have produced, column order aside, and
 * `start` + `rollback` in the starting schema. Two contracts, chosen per
 * operation:
 *  - Keep the original (rename_column without type change, up or down, and
 *    no later operation of the migration building on the new name): no
 *    second column (with "copy": a plain one that only serves the new name
 *    on the table while the migration runs, dropped first by the contract).
 *    The contract renames the original, which is exactly the offline RENAME COLUMN: every index (of
 *    any kind, with its name), constraint, foreign key in either direction,
 *    view and materialized view (whose output column keeps its name, as
 *    Postgres writes `claim AS claim_text`), grant, comment, default,
 *    NOT NULL and statistics target follows, and the column keeps its
 *    position and statistics. It costs two catalog updates in the contract.
 *  - Take the second column (type changes, alter_column, renames whose
 *    values change): the original is dropped at contract and the second
 *    column takes its name, so dependents are moved to it: simple indexes
 *    (built CONCURRENTLY at expand, renamed at contract, UNIQUE constraints
 *    re-attached), single-column foreign keys both ways (NOT VALID, validated
 *    after the backfill, renamed), NOT NULL (CHECK NOT VALID, validated, SET
 *    NOT NULL), comment, column privileges, statistics target and default.
 *    A default that the new type cannot take is refused before any DDL
 *    unless the operation gives "default". CHECK constraints and indexes
 *    that are not simple (expressions, predicates, INCLUDE, ordering,
 *    operator classes, any access method) are written over the second column
 *    by Postgres during the catalog's rehearsal (migration_dependents.h):
 *    CHECKs are added NOT VALID at expand, validated after the backfill and
 *    renamed at contract; indexes are built CONCURRENTLY and renamed at
 *    contract. Views and materialized views reading the column are what an
 *    offline ALTER COLUMN ... TYPE refuses, so their offline equivalent is
 *    drop, change, create again: the contract drops them (and the views
 *    reading them, at any depth) before the column
 *    and creates them again (definitions, options, grants, comments, owner,
 *    a materialized view's data and indexes, all read at start) after the
 *    second column has the column's name; for rename_column while it still
 *    wears the old name, so that the rename after makes Postgres write
 *    `new AS old` as an offline rename does. Whatever the rehearsal saw
 *    Postgres refuse on the new type is refused before the first DDL with
 *    Postgres's message. Everything else that depends on the column
 *    (a UNIQUE constraint whose index is not
 *    simple; EXCLUDE constraints; multi-column foreign keys; triggers,
 *    policies, extended statistics, sequences, generated columns) is refused
 *    before the first DDL, naming the object, why, and what to do.
 *  - drop_column runs the offline DROP COLUMN at contract, so what goes with
 *    the column offline goes with it online; what an offline DROP COLUMN
 *    refuses without CASCADE (a view, a foreign key of another table, a
 *    policy, a generated column ...) is refused before any DDL.
 * `migrate plan` lists every dependent it carries and how. */
#ifndef PGTANDEM_MIGRATION_PLAN_H
#define PGTANDEM_MIGRATION_PLAN_H

#include <stdio.h>

#include "migration.h"
#include "migration_catalog.h"
#include "migration_sql.h"

/* One `up` expression a backfill batch evaluates, kept apart so that a
 * failed batch can say which expression failed on which row. */
struct mig_bf_expr {
    char *what;            /* operations[i].op */
    char *column;          /* raw name of the column it fills */
    char *type;            /* that column's SQL type (NULL in plans read back from JSON) */
    char *up;              /* the expression, as its author wrote it */
    char *pending;         /* predicate: this row still needs it */
    char *value;           /* what the batch's SET gives the column (while planning; NULL read back) */
};

/* One table the backfill must walk, with the pieces of its batch statement.
 * All strings are complete, quoted SQL fragments. */
struct mig_bf_table {
    char *schema, *name;   /* raw names, used as the progress key */
    char *qname;           /* quoted schema.table */
    char **pk, **pk_types; /* quoted key columns and their types */
    size_t npk;
    char *set_list;        /* "new" = (up), ... ("" when the batches delete) */
    int deletes;           /* delete_rows: each batch deletes the rows `pending` picks */
    int data;              /* the file's own data statement (update_rows, delete_rows): its batches run
                            * with the table's triggers and foreign keys' actions, as offline */
    char *pending;         /* predicate: this row still needs the backfill */
    char *mismatch;        /* predicate for verify: shapes disagree (NULL: nothing to verify) */
    struct mig_bf_expr *exprs;  /* the expressions of set_list (none in plans stored by older versions) */
    size_t nexprs;
    double est_rows;
};

/* A constraint of the new shape that `complete` validates before its cutover,
 * with traffic flowing: `add` puts it on the table NOT VALID (rows written
 * from then on are checked), `validate` scans the existing rows (SHARE UPDATE
 * EXCLUSIVE, which does not block reads or writes). When rows violate it,
 * `violations` counts them and returns the first key, and `drop` removes
 * the constraint again, so a refused complete leaves the migration as it
 * was. The contract's VALIDATE of the same constraint is then a no-op. */
struct mig_check {
    int op_index;
    char *describe;     /* operations[i].op: check (expr) on "schema"."table" */
    char *add;          /* several statements, one transaction */
    char *validate;
    char *violations;   /* SELECT count, the first violating row's key as ("k")=(v) */
    char *drop;
};

struct mig_plan {
    struct mig_steps expand;    /* before the backfill; MIG_STEP_ALONE steps run outside a txn */
    struct mig_steps validate;  /* after the backfill: VALIDATE CONSTRAINT ... */
    struct mig_check *checks;   /* complete, before the cutover: constraints that need a scan */
    size_t nchecks;
    struct mig_steps contract;  /* one transaction */
    struct mig_steps post;      /* after the contract commits (plans stored by older versions) */
    struct mig_steps rollback;  /* removes everything expand created; safe after a partial expand */
    struct mig_bf_table *bf;
    size_t nbf;
    char *version_schema;       /* quoted pgtandem_<name> */
    char **notes;               /* things the plan could not carry over, for the operator */
    size_t nnotes;
    char **carried;             /* dependents carried to the new shape, and how (plan output only) */
    size_t ncarried;
};

/* cat may be NULL (offline plan: catalog-derived parts become placeholders
 * and validation against the live schema is skipped). Returns 0, or -1 with
 * err naming the operation index and object. */
int mig_plan_build(const struct migration *m, const struct mig_catalog *cat, struct mig_plan *p,
                   char *err, size_t errlen);
void mig_plan_free(struct mig_plan *p);
/* create_index with keys written as SQL, INCLUDE or storage parameters, on
 * schema.table (the engine builds it once on an empty probe table before
 * any DDL); cols are the op's plain columns as they are named there. */
char *mig_index_sql_keys(const struct mig_op *op, const char *schema, const char *table, char *const *cols,
                         int concurrently);
void mig_check_free(struct mig_check *k);
void mig_plan_print(const struct migration *m, const struct mig_plan *p, FILE *out);

/* The plan is computed once, against the catalog as it was before expand,
 * and stored with the migration so complete/rollback/verify run exactly
 * what start planned. */
char *mig_plan_to_json(const struct mig_plan *p);
int mig_plan_from_json(const char *text, struct mig_plan *p, char *err, size_t errlen);

/* Name of the session setting that makes the triggers stand aside for the
 * backfill's own session. */
#define MIG_BACKFILL_GUC "pgtandem.backfill"
#define MIG_VERSION_GUC "pgtandem.version"

#endif

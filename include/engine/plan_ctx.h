/* What the pieces of a plan share while mig_plan_build runs: the migration,
 * the catalog as the migration's earlier operations leave it, and the plan
 * being filled. Internal to the plan: migration_plan.c, plan_*.c and the
 * operations in ops/ include it; nothing outside them does. */
#ifndef PGTANDEM_PLAN_CTX_H
#define PGTANDEM_PLAN_CTX_H

#include "migration.h"
#include "migration_catalog.h"
#include "migration_names.h"
#include "migration_sql.h"

/* The plan being filled (migration_plan.h, which each file using this one
 * includes first: this header does not, so that the plan's public header
 * and its internal one do not include each other). */
struct mig_plan;

struct vcol {
    const char *schema, *table;   /* owned by the migration */
    char name[72], type[136];     /* copies: callers pass stack buffers */
};

struct plan_ctx {
    const struct migration *m;
    const struct mig_catalog *cat;
    struct mig_plan *p;
    char *err;
    size_t errlen;
    struct vcol added[256];     /* columns added by earlier operations */
    size_t nadded;
    const struct mig_op *created[64];  /* create_table / rename_table targets so far */
    size_t ncreated;
    const char *views[64];      /* views re-created by the contract so far (catalog names) */
    size_t nviews;
    struct mig_steps shape_defaults; /* the new shape's view defaults, set once its views exist */
    struct mig_steps first;     /* expand steps that go before every other (add_enum_value) */
    struct mig_steps new_shape_sql; /* sql operations run at start in the new version's schema, once it exists */
    struct {                    /* names this migration gives constraints and indexes (plan_pg_names) */
        const char *schema;     /* owned by the migration */
        char name[64];
        int relation;           /* an index's name (a relation's), not only a constraint's */
    } taken[256];
    size_t ntaken;
};

/* ---- plan_names_catalog.c: object names, errors, the catalog as earlier
 * operations leave it --------------------------------------------------- */
__attribute__((format(printf, 3, 4)))
int op_error(struct plan_ctx *c, const struct mig_op *op, const char *fmt, ...);
void carried(struct plan_ctx *c, const struct mig_op *op, const char *fmt, const char *a, const char *b);
void object_name(char *out, size_t n, const char *kind, const struct mig_op *op, int k, const char *mig);
const struct mig_cat_table *table_of(const struct plan_ctx *c, const char *schema, const char *name);
/* The create_table of this migration that made the table, or NULL. */
const struct mig_op *made_by(const struct plan_ctx *c, const char *schema, const char *name);
int table_exists(const struct plan_ctx *c, const char *schema, const char *name);
const char *column_type(const struct plan_ctx *c, const char *schema, const char *table, const char *col);
void remember_column(struct plan_ctx *c, const char *schema, const char *table, const char *name,
                     const char *type);
void remember_table(struct plan_ctx *c, const struct mig_op *op);
int require_table(struct plan_ctx *c, const struct mig_op *op, const char *name);
int require_column(struct plan_ctx *c, const struct mig_op *op, const char *table, const char *col);
int require_no_column(struct plan_ctx *c, const struct mig_op *op, const char *table, const char *col);
int require_columns(struct plan_ctx *c, const struct mig_op *op, const char *table, char *const *cols,
                    size_t n);
int require_key(struct plan_ctx *c, const struct mig_op *op, const char *table);
/* Another operation of the migration on op's table (a rename_table's by
 * the name it renames) for which `counts` holds, or NULL; *index its
 * position. */
const struct mig_op *other_op_on_table(const struct plan_ctx *c, const struct mig_op *op,
                                       int (*counts)(const struct mig_op *o, const struct mig_op *op), size_t *index);
int key_uses(const struct plan_ctx *c, const struct mig_op *op, const char *table, const char *col);
/* The operation's change of col's type (no up or down) is one Postgres
 * makes in the catalog alone (engine.c's probe) and only simple indexes
 * depend on col: it can be done by the contract, in place. */
int retype_in_place(const struct plan_ctx *c, const struct mig_op *op, const char *col);

/* The operation of the migration that takes the foreign key f of the live
 * catalog away (a drop_table of its table, a drop_column of one of its
 * columns, a drop_constraint of it by name): among those before op, or
 * among all of them when anywhere is set. NULL when none does. */
const struct mig_op *removes_fkey(const struct plan_ctx *c, const struct mig_op *op, const struct mig_cat_ref *f,
                                  int anywhere);

/* The new shape's default for a column of its view of table (expr NULL:
 * none), while the base table keeps the old release's until the contract:
 * an insert through an updatable view takes the view column's default
 * before the table's. */
void add_shape_default(struct plan_ctx *c, const struct mig_op *op, const char *table, const char *view_col,
                       const char *expr);

/* ---- plan_pg_names.c: the names Postgres gives what the DDL leaves unnamed */
/* t_a_b_key (primary 0) or t_pkey (primary 1): an index or the UNIQUE or
 * PRIMARY KEY constraint it backs. */
void choose_key_name(struct plan_ctx *c, const char *schema, const char *table, char *const *cols, size_t n,
                     int primary, char *out, size_t outlen);
void choose_fkey_name(struct plan_ctx *c, const char *schema, const char *table, char *const *cols, size_t n,
                      char *out, size_t outlen);
void choose_check_name(struct plan_ctx *c, const char *schema, const char *table, const char *expr, char *out,
                       size_t outlen);
/* A name a migration's operation gives explicitly: later choices skip it. */
void take_name(struct plan_ctx *c, const char *schema, const char *name, int relation);

/* ---- plan_sql_build.c: statements and clauses the operations share ------ */
/* ALTER TABLE schema.table <action> <ident><tail>; caller frees. */
char *alter_table_sql(const char *schema, const char *table, const char *action, const char *ident,
                      const char *tail);
void add_alter(struct mig_steps *l, const struct mig_op *op, const char *table, const char *action,
               const char *ident, const char *tail);
/* ALTER INDEX IF EXISTS schema.from RENAME TO to (run again after a crash,
 * or after the contract took the index with its table, it does nothing);
 * caller frees. */
char *rename_index_sql(const char *schema, const char *from, const char *to);
/* ALTER TABLE schema.table RENAME COLUMN from TO to; caller frees. */
char *rename_column_sql(const char *schema, const char *table, const char *from, const char *to);
void add_rename_column(struct mig_steps *l, const struct mig_op *op, const char *table, const char *from,
                       const char *to);
/* A plain rename's contract: a migration built on it may have renamed the
 * column already (brought forward, plan_on_shape.c), and then it is done. */
void add_rename_column_unless_done(struct mig_steps *l, const struct mig_op *op, const char *table,
                                   const char *from, const char *to);
/* A rename brought forward, undone (to back to from) unless the migration
 * below that renames it has completed (its contract found it done). */
char *rename_back_unless_completed(const char *schema, const char *table, const char *from, const char *to,
                                   const char *below);
void add_set_default(struct mig_steps *l, const struct mig_op *op, const char *table, const char *col,
                     const char *expr);
void add_not_null_check(struct plan_ctx *c, const struct mig_op *op, const char *table, const char *col);
/* The same for the k-th of several columns of one operation; the check's
 * temporary name is written to cname (80 bytes). */
void add_not_null_check_k(struct plan_ctx *c, const struct mig_op *op, const char *table, const char *col, int k,
                          char *cname);
void add_comment(struct plan_ctx *c, const struct mig_op *op, const char *table, const char *col,
                 const char *comment);
/* An index's definition from USING on: its columns (swap_from written as
 * swap_to) and predicate. */
void index_definition_sql(struct mig_str *s, const char *method, char *const *cols, size_t ncols,
                          const char *swap_from, const char *swap_to, const char *where);
char *index_sql(const char *schema, const char *table, const char *name, int unique, const char *method,
                char *const *cols, size_t ncols, const char *swap_from, const char *swap_to, const char *where);
char *drop_index_sql(const char *schema, const char *name, int concurrently);
/* At contract: ALTER TABLE table ADD CONSTRAINT name UNIQUE USING INDEX ix
 * (the index built CONCURRENTLY at expand becomes the constraint and takes
 * its name). */
void add_unique_using_index(struct plan_ctx *c, const struct mig_op *op, const char *table, const char *name,
                            const char *ix);
void add_index_build(struct mig_steps *l, const struct mig_op *op, const char *schema, const char *name,
                     char *create_sql);
void append_steps(struct mig_steps *dst, struct mig_steps *src);
void column_definition(struct mig_str *s, const struct mig_column *col, int with_default);
void references_clause(struct mig_str *s, const char *schema, const char *ref);
void column_list(struct mig_str *s, char *const *cols, size_t n);

/* ---- plan_trigger.c: the tandem rule's triggers ------------------------- */
struct dual_write {
    const char *table, *old_col, *new_col, *new_type, *up, *down;
    const char *down_name;  /* alter_column: `down` names the new value by the column's name */
    int copy_only;          /* see shadow_spec */
    int drawn;              /* the old column draws its values from a sequence (serial, identity): a
                             * new-shape INSERT that leaves the new column NULL takes the value the
                             * old one drew (up), so an insert draws one value, not two */
};

/* The trigger's locals: the columns its expressions (exprs) read, and
 * extra, the column it fills. */
void declare_columns(struct plan_ctx *c, struct mig_str *s, const struct mig_op *op, const char *table,
                     const char *extra, const char *extra_type, const char *const *exprs, size_t nexprs);
void declare_shape(struct mig_str *s);
void writer_shape(struct plan_ctx *c, struct mig_str *s, const struct mig_op *op, const char *table,
                  int new_view_writes_new, const char *bypass_insert, const char *bypass_update);
char *new_is(const char *col, const char *test);
void direction_runs(struct plan_ctx *c, struct mig_str *s, const struct mig_op *op, const char *table,
                    const char *indent, const char *expr, const char *target, const char *renamed,
                    const char *as);
char *trigger_function(const char *fname, char *body);
char *dual_write_function(struct plan_ctx *c, const struct mig_op *op, const char *fname,
                          const struct dual_write *d);
void trigger_names(const struct plan_ctx *c, const struct mig_op *op, char *fname, size_t n);
void install_trigger(struct plan_ctx *c, const struct mig_op *op, const char *table, char *function_sql);

/* ---- plan_on_shape.c: a table as a migration in flight below shows it --- */
/* The name the shape the migration is built on shows the table's column
 * phys under: phys itself when no migration below changes the table,
 * NULL when that shape hides it. */
const char *shape_shows(const struct mig_cat_table *t, const char *phys);
/* 1 when name is a column the shape renames, retypes or drops (under
 * either of its names). */
int shape_changes(const struct mig_cat_table *t, const char *name);
/* The name this migration's plain rename gives a column the migration in
 * flight below shows under `shown`, or NULL (version views). */
const char *renamed_plainly_to(const struct plan_ctx *c, const char *schema, const char *table, const char *shown);
/* The renames brought forward (migration_catalog.h, forward): their
 * statements into front (the expand's very first), and their undoing
 * appended to the rollback. */
void plan_forward_renames(struct plan_ctx *c, struct mig_steps *front);
/* 1 when the shape is the table itself, every column under its name. */
int shape_is_table(const struct mig_cat_table *t);
/* -1 (c->err set) when an operation does more than add to a table whose
 * shape is not the table, or names a column that shape changes. */
int plan_check_shapes(struct plan_ctx *c);
/* ---- plan_in_place.c: whether a column change moves data ---------------- */
/* A rename that keeps the column's values keeps the original column (the
 * new shape shows it under the new name; the contract renames it). */
int rename_keeps_original(const struct plan_ctx *c, const struct mig_op *op);
/* An alter_column that changes the column in place (no second column: the
 * new shape shows the column as it is). */
int alter_in_place(const struct plan_ctx *c, const struct mig_op *op);

/* ---- plan_backfill.c: the pieces of each backfill batch ----------------- */
void add_backfill(struct plan_ctx *c, const struct mig_op *op, const char *table, const char *new_col,
                  const char *type, const char *old_col, const char *up, int verify);
/* A data migration's update of existing rows, in the same batches: col =
 * up on the rows `where` (NULL: every row) picks, each row once. */
void add_data_update(struct plan_ctx *c, const struct mig_op *op, const char *table, const char *col,
                     const char *type, const char *up, const char *where);
/* ... and its DELETE of the rows `where` (NULL: every row) picks. */
void add_data_delete(struct plan_ctx *c, const struct mig_op *op, const char *table, const char *where);

/* ---- plan_carry.c: the second column and the dependents carried to it --- */
/* The column that holds col of schema.table for the new shape while the
 * migration runs, written into out: the second column an earlier
 * alter_column of this migration gives it, or the one a column added
 * under the name an earlier rename frees has (it takes col's name at the
 * contract; returns 1), or col itself (0). An index or key this migration
 * adds on col is built on it, so that it survives the contract as it would
 * after the offline ALTER COLUMN ... TYPE. */
int column_until_contract(const struct plan_ctx *c, const struct mig_op *op, const char *schema, const char *table,
                          const char *col, char *out, size_t n);
/* Whether the SQL expression expr (a CHECK, an index predicate) of op's
 * table reads a column an earlier alter_column retypes: until the
 * contract its values for the new shape live in the second column, which
 * the expression does not name (its name into col; one that cannot be
 * read counts). */
int expr_reads_retyped(const struct plan_ctx *c, const struct mig_op *op, const char *expr, char *col, size_t n);
/* expr (a CHECK, an index predicate of op's table) reading each column an
 * earlier alter_column retypes by its second column, where the new
 * shape's values are until the contract (which gives it the column's
 * name, and the constraint or index follows); NULL when it cannot be
 * rewritten (a whole-row or qualified reference) or out of memory. */
char *expr_on_second_columns(const struct plan_ctx *c, const struct mig_op *op, const char *expr);
struct shadow_spec {
    const char *table, *from, *to, *type, *up, *down;
    int copy_default, copy_not_null, copy_comment;
    int copy_dependents;    /* indexes and foreign keys */
    int copy_only;          /* rename "copy": the views show the original under both names, so a
                             * write through either shape is a write of the original */
};

int expand_second_column(struct plan_ctx *c, const struct mig_op *op, const struct shadow_spec *sp,
                         struct mig_steps *deferred);
void set_new_default(struct plan_ctx *c, const struct mig_op *op, const char *col);
int contract_second_column(struct plan_ctx *c, const struct mig_op *op, const char *col,
                           struct mig_steps *deferred, struct mig_steps *views);

/* ---- plan_uncarried.c: what cannot follow, refused before any DDL ------- */
int refuse_uncarried_dependents(struct plan_ctx *c, const struct mig_op *op, const char *table,
                                const char *col, int dropping);

/* ---- plan_partitions.c: partitioned tables ---------------------------- */
/* The table's catalog when it is a partitioned table with partitions, else
 * NULL (and always NULL without a catalog). */
const struct mig_cat_table *partitioned_table(const struct plan_ctx *c, const char *schema, const char *table);
/* Adds to expand the online build of op's index of partitioned table t
 * (built_as ON ONLY t, each partition's CONCURRENTLY and attached) and to
 * the rollback its drops; definition is the index's from USING on. Under
 * a name an earlier drop_index frees (built_as not op->name; a partition's
 * index the drop takes with it), built under a temporary one and renamed
 * after the contract (post), once that drop has run. */
int build_partitioned_index(struct plan_ctx *c, const struct mig_op *op, const struct mig_cat_table *t,
                            int unique, const char *definition, const char *built_as);
/* Adds op's foreign key name of partitioned table t: NOT VALID on each
 * leaf partition at expand, validated there, then the table's own ADD,
 * which attaches them; the rollback drops them. When name is a temporary
 * one, each partition's key is renamed to final_name at the contract (the
 * table's own is the caller's). definition is the key's from FOREIGN KEY
 * on, without NOT VALID. */
int build_partitioned_foreign_key(struct plan_ctx *c, const struct mig_op *op, const struct mig_cat_table *t,
                                  const char *name, const char *final_name, const char *definition);
/* Carries index ix of partitioned table t from column from to its second
 * column to: built as tmp ON ONLY t over to at expand, each partition's
 * CONCURRENTLY and attached (under temporary names numbered by slot, the
 * index's place in the catalog); at contract (the caller's steps after
 * the original's drop) renamed to name_now (ix's name after the renames
 * of the migration before op) and each partition's to the name an offline
 * rebuild gives it. */
int carry_partitioned_index(struct plan_ctx *c, const struct mig_op *op, const struct mig_cat_table *t,
                            const struct mig_cat_index *ix, const char *name_now, const char *from, const char *to,
                            const char *tmp, int slot);
/* What Postgres refuses on a partitioned table, or what cannot be done
 * there online, refused (op_error) before any DDL; 0 when op may go on. */
int refuse_on_partitioned(struct plan_ctx *c, const struct mig_op *op);

/* ---- plan_checks.c: constraints complete validates before its cutover --- */
void add_check_before_cutover(struct plan_ctx *c, const struct mig_op *op, const char *shadow);
/* add_column's NOT NULL on a column added without a value to a table that
 * was empty: checked by complete before its cutover (not from expand on,
 * where every insert of the old release, which cannot give the column a
 * value, would fail), then SET NOT NULL in the contract. */
void add_not_null_before_cutover(struct plan_ctx *c, const struct mig_op *op, const char *col);

/* ---- plan_constraints.c: a table's named constraints as earlier
 * operations leave them ---------------------------------------------------- */
struct constraint_now {
    int exists;
    char contype;                          /* c, f, p, u, x */
    const struct mig_cat_constraint *cat;  /* as the catalog has it (under its name there), or NULL */
    const struct mig_op *made_by;          /* the earlier create_constraint or rename_constraint behind it */
    const struct mig_op *gone_by;          /* the earlier operation that took it away */
};

/* Constraint name of table (as op names it) when op runs: the catalog's,
 * then what earlier create_constraint, rename_constraint, drop_constraint
 * and drop_table operations did to it. */
void constraint_now(const struct plan_ctx *c, const struct mig_op *op, const char *table, const char *name,
                    struct constraint_now *out);
const char *constraint_kind_name(char contype);

/* Whether create_constraint op can add constraint name (of op->table) under
 * that name at expand: 0 it can; 1 not before the contract, where an
 * earlier drop_constraint or rename_constraint frees it (the constraint
 * is then made under a temporary name and renamed at the contract); -1
 * refused (op_error): the name is still taken then (42710), or, for a
 * constraint with an index (index_backed), a relation of the schema
 * other than the dropped constraint's index has it (42P07). */
int constraint_name_at_expand(struct plan_ctx *c, const struct mig_op *op, const char *name, int index_backed);
/* The same for the index name create_index op builds: 1 when an earlier
 * drop_index drops an index of that name (after the contract) or an
 * earlier rename_constraint renames the constraint whose index has it (at
 * the contract); 0 when free at expand, an earlier ALTER INDEX ... RENAME
 * of the expand's SQL included; -1 when an index of the schema has it and
 * nothing frees it. */
int index_name_at_expand(struct plan_ctx *c, const struct mig_op *op, const char *name);

#endif

/* The SQL converter's state while it walks a script, and what its files
 * share: sql_convert.c (the walk, messages, the open operation, statements
 * passed through or refused), sql_convert_table.c (CREATE TABLE, columns,
 * CREATE INDEX), sql_convert_alter.c (ALTER TABLE, renames),
 * sql_convert_retype.c (ALTER COLUMN ... TYPE) and
 * sql_convert_objects.c (types, extensions, functions, sequences: what
 * undoes their creation, their drops, an enum replaced),
 * sql_convert_fill.c (a required column filled by an UPDATE),
 * sql_convert_data.c (other UPDATEs, in batches), sql_convert_made.c
 * (what undoes a statement on a table the file made), sql_convert_recreate.c
 * (a column dropped and added again) and sql_convert_do.c
 * (DO blocks guarding statements, read on the live catalog). Internal to the
 * converter: nothing else includes it. */
#ifndef PGTANDEM_SQL_CONVERT_CONV_H
#define PGTANDEM_SQL_CONVERT_CONV_H

#include <jansson.h>
#include <stddef.h>

#include "sql_script.h"

struct sqlc_options;    /* sql_convert.h: the public interface, which the converter's files include */

#define SQLC_TYPE_LEN 256
#define SQLC_NAME_LEN 64

/* The last operation emitted, kept open so the next statement on the same
 * column can join it. */
enum last_kind { LAST_NONE, LAST_ALTER, LAST_RENAME };

struct last_op {
    enum last_kind kind;
    json_t *body;               /* borrowed from the operations array */
    char schema[SQLC_NAME_LEN], table[SQLC_NAME_LEN];
    char column[SQLC_NAME_LEN]; /* the column's name after the operation */
    char from[SQLC_NAME_LEN];   /* rename: its name before */
    const struct sql_stmt *type_stmt;  /* where the type changed; down still to write */
    char cast_back[SQLC_TYPE_LEN];     /* the old type: down is a cast of the new value back to it */
    int via_text;                      /* the up casts through text: so does the down */
};

struct known_col {
    char *schema, *table, *column, *type;
};

/* A table the script creates: the running release cannot know it, so what
 * the script does to it later runs as written (sql_convert_alter.c). */
struct made_table {
    char schema[SQLC_NAME_LEN], name[SQLC_NAME_LEN];
    int planned;    /* made by a create_table operation, unchanged since: the plan knows it */
};

struct conv {
    struct sql_script s;
    const struct sqlc_options *opt;
    json_t *ops;
    struct last_op last;
    struct known_col *known;    /* columns this script created, with their types */
    size_t nknown, capknown;
    struct made_table made[128];/* tables this script created (under their current names) */
    size_t nmade;
    char dropped[32][2 * SQLC_NAME_LEN + 8];  /* types and domains dropped at complete, as SQL */
    size_t ndropped;
    char dropped_views[32][2 * SQLC_NAME_LEN + 8]; /* views dropped at complete, as SQL */
    size_t ndropped_views;
    /* types renamed at complete (Prisma's "X_new" RENAME TO "X"): until
     * then the type has its old name, which later statements of the file
     * naming the new one reach it by */
    struct {
        char schema[SQLC_NAME_LEN], from[SQLC_NAME_LEN], to[SQLC_NAME_LEN];
    } type_renamed[16];
    size_t ntype_renamed;
    /* columns dropped and added again under their name by the script
     * ("schema.table.column"): the ADD becomes one alter_column */
    char recreated[16][3 * SQLC_NAME_LEN + 8];
    size_t nrecreated;
    /* tables whose data statements run at complete from here on: one
     * waited for a change the table takes at the contract (sql_convert_waits.c) */
    struct {
        char schema[SQLC_NAME_LEN], table[SQLC_NAME_LEN];
    } deferred_data[16];
    size_t ndeferred_data;
    /* ALTER INDEX ... RENAME of an index of the catalog, run at expand:
     * a later DROP INDEX of the new name drops it under its old one
     * (sql_convert_rename_dropped.c) */
    struct {
        char schema[SQLC_NAME_LEN], from[SQLC_NAME_LEN], to[SQLC_NAME_LEN];
        json_t *op;                 /* its sql operation, held (a reference of its own) */
        const struct sql_stmt *st;
    } index_renamed[16];
    size_t nindex_renamed;
    /* operations that run last, after every other one's contract (an
     * index's rename on a column the file retypes): moved to the end once
     * the file is read (sqlc_renames_last); references of its own */
    json_t *last_ops;
    /* per statement, the RangeVars of its parse tree, collected when first
     * asked (sql_convert_data.c) */
    json_t *rangevars;
    char alembic_from[64], alembic_to[64];
    /* the first UPDATE of each column this script adds that could not
     * become its "up" (it reads other rows): what a NOT NULL after it is told */
    json_t *unfolded;           /* [add_column body, line], one per column: no later UPDATE of it is folded either */
    char *err;
    size_t errlen;
};

/* ---- sql_convert.c ---- */

struct mig_str;
/* A dotted name list (["s", "t"], an operator class, a collation) as SQL,
 * each part quoted as needed. */
void sqlc_add_dotted(struct mig_str *s, json_t *names);
/* The kind of the emitted operation op ("add_column" ...; "" when it has
 * none), with its body. */
const char *sqlc_op_kind(json_t *op, json_t **body);
/* 1 when the emitted operation `op` is on rel (its table, or the table a
 * rename_table renames), with its kind and body. */
int sqlc_op_on(json_t *op, json_t *rel, const char **kind, json_t **body);
/* The same for the operation at position i, by the name its table has
 * now, after the rename_table operations emitted since (a statement of
 * the file naming the table by its new name, 40427-212: RENAME COLUMN,
 * ADD COLUMN, an `sql` between, the table's RENAME, an UPDATE). */
int sqlc_op_on_now(struct conv *c, size_t i, json_t *op, json_t *rel, const char **kind, json_t **body);

/* Why the converter does not remove a value from an enum, and what to do. */
extern const char SQLC_ENUM_VALUE_REMOVAL[];

/* Stops the conversion: "FILE:LINE:COL: message (in "excerpt")". Returns -1. */
__attribute__((format(printf, 3, 4)))
int sqlc_fail(struct conv *c, const struct sql_stmt *st, const char *fmt, ...);
int sqlc_oom(struct conv *c, const struct sql_stmt *st);
const char *sqlc_str_or(json_t *obj, const char *key, const char *dflt);
int sqlc_is_true(json_t *obj, const char *key);
void sqlc_copy_name(char *dst, const char *src);
/* table (and schema when it is not public) of a RangeVar into an op body */
void sqlc_set_relation(json_t *body, json_t *rel, const char *key);
const char *sqlc_rel_schema(json_t *rel);
/* Two RangeVars name the same table (schema public when left out). */
int sqlc_same_relation(json_t *a, json_t *b);
int sqlc_add_op(struct conv *c, const char *kind, json_t *body);
int sqlc_remember_column(struct conv *c, const char *schema, const char *table, const char *column,
                         const char *type);
/* The column's type before this statement: one this script gave it, else
 * the live catalog's when a lookup was provided. */
int sqlc_old_type(struct conv *c, const char *schema, const char *table, const char *column, char *out);
/* An explicit `down` written above the statement as "-- pgtandem:down EXPR". */
char *sqlc_annotated_down(struct conv *c, const struct sql_stmt *st);
/* Writes the derived `down` of the open operation and closes it. */
int sqlc_close_last(struct conv *c);
int sqlc_same_column(const struct last_op *l, enum last_kind kind, json_t *rel, const char *column);
/* The alter_column body for column, joined to the previous statement's when
 * it changed the same column and does not already set key. */
json_t *sqlc_alter_body(struct conv *c, json_t *rel, const char *column, const char *key);
/* The statement as an `sql` operation run as written ("on" NULL: at
 * expand; "down" NULL: nothing undoes it on rollback). */
int sqlc_emit_sql(struct conv *c, const struct sql_stmt *st, const char *on, const char *down);
/* The same with the statement's text given (text: NULL for its own). */
int sqlc_emit_sql_text(struct conv *c, const struct sql_stmt *st, const char *text, const char *on, const char *down);

/* ---- sql_convert_table.c ---- */

void sqlc_add_fk_action(json_t *ref, const char *key, const char *code);
/* A Constraint with only the fields a column object can say. */
int sqlc_plain_constraint(json_t *con);
/* ColumnDef -> migration column object. Returns 0, 1 when the column has
 * something the column object cannot say (*why set), -1 on failure. */
int sqlc_column_json(struct conv *c, const struct sql_stmt *st, json_t *def, const char *schema,
                     json_t **out, const char **why);
int sqlc_create_table(struct conv *c, const struct sql_stmt *st);
int sqlc_create_index(struct conv *c, const struct sql_stmt *st);
/* The table this script created under that name (a RangeVar), or NULL. */
struct made_table *sqlc_made_table(struct conv *c, json_t *rel);

/* ---- sql_convert_made.c ---- */

/* st, an ALTER TABLE or CREATE INDEX on the table made, which the file
 * made, emitted as written (or as text, when not NULL) with its own `down`: its inverse, or the
 * table's drop, so the rollback's reverse order drops nothing the table
 * still uses. 0, or -1 with the error set. */
int sqlc_emit_on_made(struct conv *c, const struct sql_stmt *st, const char *text, const struct made_table *made);

/* ---- sql_convert_recreate.c ---- */
/* The command of statement o, an ALTER TABLE of rel, of kind subtype
 * ("AT_AddColumn", "AT_AlterColumnType", "AT_DropColumn" ...) on column,
 * or NULL. */
json_t *sqlc_column_cmd(const struct sql_stmt *o, json_t *rel, const char *subtype, const char *column);

/* A DROP COLUMN of column on rel that an ADD COLUMN of the same name
 * follows in the file: remembered for that ADD (1), nothing emitted; 0
 * when it is a plain drop. */
int sqlc_drop_recreated(struct conv *c, const struct sql_stmt *st, json_t *rel, const char *column);
/* The ADD COLUMN of col (taken: freed here) of a column the file dropped
 * above: one alter_column marked "recreate" (0, or -1 with the error set);
 * 1 when the column was not dropped above (col left to the caller). */
int sqlc_add_recreated(struct conv *c, const struct sql_stmt *st, json_t *rel, json_t *col);

/* ---- sql_convert_alter.c ---- */

int sqlc_alter_table(struct conv *c, const struct sql_stmt *st);
int sqlc_rename(struct conv *c, const struct sql_stmt *st);
/* The name the table of operation k has after the operations emitted
 * since (the rename_table ops among them), written into out. */
void sqlc_table_name_now(struct conv *c, size_t k, const char *schema, const char *table, char *out);

/* ---- sql_convert_freed.c ---- */

/* A column name an earlier statement frees (RENAME COLUMN away, DROP
 * COLUMN) taken again by an ADD COLUMN (`added`) or a RENAME ... TO. A new
 * column after a rename is added apart until the contract (the plan:
 * engine/ops/op_add_column.c); the others are refused before any DDL (the
 * plan would only find the name taken), saying what to write instead. -1
 * when refused, 0 when allowed or not such a name. */
int sqlc_refuse_freed_column(struct conv *c, const struct sql_stmt *st, json_t *rel, const char *column, int added);
/* CREATE TABLE of a name an earlier statement of the file frees (RENAME
 * TO another name, DROP TABLE): the old table keeps it until the contract,
 * so it is refused before any DDL, saying what to write instead. -1 when
 * refused, 0 when the name is not one. */
int sqlc_refuse_freed_table(struct conv *c, const struct sql_stmt *st, json_t *rel);

/* ---- sql_convert_retype.c ---- */

/* ALTER COLUMN column TYPE (def: its ColumnDef) of rel as an alter_column,
 * or joined to the rename above it. 0, or -1 with the error set. */
int sqlc_alter_type(struct conv *c, const struct sql_stmt *st, json_t *rel, const char *column, json_t *def);
/* The `down` of st's change of column to type (its `up` up, its USING
 * using or NULL) from old_type, a type the file gave the column above: the
 * annotated one, the inverse of a known USING, or a cast back; NULL when
 * none can be derived (caller frees). */
char *sqlc_retype_down(struct conv *c, const struct sql_stmt *st, json_t *using, const char *column, const char *type,
                       const char *up, const char *old_type);

/* ---- sql_convert_retype_twice.c ---- */
/* st's change of column to type (up, its USING using or NULL) composed
 * with the file's change of its type above into one alter_column, where
 * nothing between can see the type that change gave: 1 composed, 0 not
 * (left to the caller), -1 with the error set. */
int sqlc_compose_retype(struct conv *c, const struct sql_stmt *st, json_t *rel, const char *column, json_t *using,
                        const char *type, const char *up);

/* ---- sql_convert_fill.c ---- */

/* The add_column body this script made for rel's column, or NULL. */
json_t *sqlc_added_column(struct conv *c, json_t *rel, const char *column);
/* An UPDATE filling a column this script added, folded into the
 * add_column as its "up": 1 when folded, 0 when it is not one, -1 on
 * failure. */
int sqlc_fold_fill(struct conv *c, const struct sql_stmt *st);
/* SET NOT NULL of a column this script added, folded into the add_column
 * (refused when nothing fills it): 1 when folded, 0 when the column is
 * not one, -1 when refused or on failure. */
int sqlc_fold_not_null(struct conv *c, const struct sql_stmt *st, json_t *rel, const char *column);

/* ---- sql_convert_data.c ---- */

/* A data UPDATE of a table the file does not create, as update_rows
 * operations run in batches: 1 when converted, 0 when it is not one, -1
 * on failure. */
int sqlc_update_rows(struct conv *c, const struct sql_stmt *st);
/* ... and a DELETE as one delete_rows. */
int sqlc_delete_rows(struct conv *c, const struct sql_stmt *st);
/* Whether rel (a table the file did not make) holds at most the rows of
 * one backfill batch, counted on the live catalog (0 without one): an
 * UPDATE or DELETE of every row that cannot run in batches then runs as
 * written, taking the locks one batch would. */
int sqlc_fits_one_batch(struct conv *c, json_t *rel);
/* Whether t writes, alters, renames or drops a table of the RangeVars
 * tables (its target, TRUNCATE's list, a DROP TABLE's names). */
int sqlc_writes_one_of(const struct sql_stmt *t, json_t *tables);
/* The RangeVars of tree appended to out (borrowed from the tree; a
 * statement's target, its "relation", is not one). */
void sqlc_collect_rangevars(json_t *tree, json_t *out);

/* ---- sql_convert_waits.c ---- */

/* A data statement of rel after a change above that the table takes only
 * at the contract (a type, a default, NOT NULL dropped, a column dropped)
 * and that its outcome depends on: emitted to run at complete (1), or
 * refused when a later statement checks the table's rows before then (-1,
 * the error set);
 * 0 when it depends on none. */
int sqlc_dml_waits(struct conv *c, const struct sql_stmt *st, json_t *rel);

/* ---- sql_convert_renamed.c ---- */

/* A data statement on a table whose columns a RENAME COLUMN above renames,
 * with those names written back to the ones the columns have at expand:
 * the new text (caller frees), or NULL when it names none (*refused 0) or
 * is refused (*refused -1, the error set). */
char *sqlc_renamed_back(struct conv *c, const struct sql_stmt *st, int *refused);

/* ---- sql_convert_do.c ---- */

/* The file's text with each DO block replaced by the statements it would
 * run on the live catalog (each at its own line), or refused: 0 with *out
 * (caller frees; NULL when the file has no DO block), -1 with the error. */
int sqlc_unroll_do(struct conv *c, char **out);

/* ---- sql_convert_objects.c ---- */

/* A statement that creates a type, domain, extension, function, sequence,
 * schema, view, trigger or policy, run as written at expand with what
 * undoes it as its `down`. */
int sqlc_emit_created(struct conv *c, const struct sql_stmt *st);
/* DROP of a type, domain, function, procedure, sequence, view or trigger
 * (removeType, OBJECT_...): run at complete, inside the contract. */
int sqlc_drop_deferred(const char *remove_type);
int sqlc_drop_object(struct conv *c, const struct sql_stmt *st);
/* ALTER TYPE ... RENAME TO: run at complete. */
int sqlc_rename_type(struct conv *c, const struct sql_stmt *st);
/* A rename of the index (index 1; rel names it) or the constraint (rel
 * names its table) `from` that an earlier create of the file made: that
 * create makes it as `to` instead. 1 when folded, 0 when not, -1 on
 * failure or when refused: made again after a drop of the old one, with a
 * statement between naming it (sql_convert_rename_new.c). */
int sqlc_fold_rename_into_create(struct conv *c, const struct sql_stmt *st, json_t *rel, int index, const char *from,
                                 const char *to);

/* The names a table and its column had before the file (each
 * SQLC_NAME_LEN bytes), from the names they have now: the file's RENAME
 * TABLE and RENAME COLUMN operations so far undone, last first. */
void sqlc_names_before_file(const struct conv *c, const char *schema, char *table, char *column);

/* A walk of a parse tree: visit is called on each node (the tree, each
 * member of an object under its key, each element of an array, key NULL)
 * and answers 1 (found: the walk ends, true), -1 (not into this node) or 0
 * (on, into it). */
typedef int (*sqlc_visit_fn)(json_t *parent, const char *key, json_t *node, void *arg);
int sqlc_tree_any(json_t *tree, json_t *parent, const char *key, sqlc_visit_fn visit, void *arg);

/* Whether any string value in tree (a parse tree, an operation) is name;
 * any_case: whatever its case (a literal of a DO block's condition may be
 * written either way). */
int sqlc_tree_names(json_t *tree, const char *name, int any_case);

/* The same, exactly, leaving out the places that name columns (a
 * ColumnDef, a column's rename, a column reference, an index or key's
 * column list): a name a type, table or constraint could have. */
int sqlc_tree_names_but_columns(json_t *tree, const char *name);

/* The first statement in [from, end) that names a or b anywhere in its
 * parse tree, or NULL. */
const struct sql_stmt *sqlc_stmt_naming(const struct sql_stmt *from, const struct sql_stmt *end, const char *a,
                                        const char *b);

/* Records the ALTER INDEX ... RENAME st just emitted as the last
 * operation (when the record is full, a later drop stays as written);
 * sqlc_forget_index_renames lets the records' operations go. */
void sqlc_remember_index_rename(struct conv *c, const struct sql_stmt *st, json_t *rel);
void sqlc_forget_index_renames(struct conv *c);

/* DROP INDEX schema.*name of a name an ALTER INDEX ... RENAME above gave
 * (with nothing between naming either name): the rename's operation is
 * removed and *name becomes the index's name before it, which the drop
 * then drops at the contract, as offline the index ends dropped. name
 * has SQLC_NAME_LEN bytes (sql_convert_rename_dropped.c). */
int sqlc_drop_renamed_index(struct conv *c, const struct sql_stmt *st, const char *schema, char *name);

/* ALTER INDEX rel RENAME after a retype of a column the index is on (read
 * on the live catalog), above or below it: emitted to run at complete,
 * after the contract gave the new column's copy of the index its name. 1 emitted, 0 not such
 * an index (or no catalog), -1 refused (sql_convert_rename_carried.c). */
int sqlc_rename_index_after_retype(struct conv *c, const struct sql_stmt *st, json_t *rel);
/* Moves the operations sqlc_rename_index_after_retype kept to the end
 * (they run at complete, after the contract of the retypes above and
 * below them). 0, or -1 out of memory. */
int sqlc_renames_last(struct conv *c);
/* Moves each create_index or create_constraint of a column a later
 * operation retypes to just after that retype, where moving it changes
 * nothing (sql_convert_built_after_retype.c). 0, or -1 out of memory. */
int sqlc_build_after_retypes(struct conv *c);
/* The name a type the file names has at expand: a rename of it above runs
 * at complete, so until then it has the name before (renames followed
 * back, newest first). */
const char *sqlc_type_at_expand(const struct conv *c, const char *schema, const char *name);
/* A column's type (a ColumnDef's or ALTER COLUMN ... TYPE's TypeName) as
 * SQL: as written, or by the name it has at expand when a rename above
 * gives the name it is written with only at complete (90003-519: a column
 * of the type Prisma's recreation renames got the old type, and the
 * contract's DROP TYPE failed). Caller frees; NULL when unreadable. */
char *sqlc_column_type_text(struct conv *c, const struct sql_stmt *st, json_t *type_name);
/* st naming such a type anywhere else (a cast, a default) is refused
 * before any DDL (-1, the error set); 0 when it names none. */
int sqlc_refuse_type_renamed_at_complete(struct conv *c, const struct sql_stmt *st);

#endif

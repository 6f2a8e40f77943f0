/* Migration files: the in-memory model of one JSON migration, its parser and
 * structural validator (no database needed), and the directory chain check
 * behind `migrate lint DIR`. Migration files are untrusted input: everything
 * is checked here before any SQL is generated from it. */
#ifndef PGTANDEM_MIGRATION_H
#define PGTANDEM_MIGRATION_H

#include <stddef.h>
#include <string.h>

enum mig_op_kind {
    MIG_RENAME_COLUMN,
    MIG_ADD_COLUMN,
    MIG_ALTER_COLUMN,
    MIG_DROP_COLUMN,
    MIG_CREATE_TABLE,
    MIG_DROP_TABLE,
    MIG_RENAME_TABLE,
    MIG_CREATE_INDEX,
    MIG_DROP_INDEX,
    MIG_CREATE_CONSTRAINT,
    MIG_SQL,
    MIG_DROP_CONSTRAINT,
    MIG_RENAME_CONSTRAINT,
    MIG_SET_REPLICA_IDENTITY,
    MIG_ADD_ENUM_VALUE,
    MIG_RENAME_ENUM_VALUE,
    MIG_UPDATE_ROWS,
    MIG_DELETE_ROWS,
};

enum mig_sql_on { MIG_ON_START, MIG_ON_COMPLETE };

/* A column as written in add_column / create_table. tri-state ints use -1
 * for "not given". */
struct mig_column {
    char *name;
    char *type;
    char *default_expr;
    char *check;
    char *references;   /* "table(column)" or "table" */
    char *comment;
    int nullable;       /* -1, 0, 1 */
    int unique;         /* -1, 0, 1 */
    int primary_key;    /* -1, 0, 1 */
    char *identity;     /* create_table: "always" or "by_default" (GENERATED ... AS IDENTITY) */
    char *generated;    /* create_table: GENERATED ALWAYS AS (expr) STORED */
};

/* A table constraint of create_table: type is primary_key, unique, check
 * or foreign_key; name NULL lets Postgres choose it, as offline. */
struct mig_constraint {
    char *type;
    char *name;
    char **columns;
    size_t ncolumns;
    char *check;
    char *ref_table;
    char **ref_columns;
    size_t nref_columns;
    char *on_delete, *on_update;
};

struct mig_op {
    enum mig_op_kind kind;
    int index;              /* position in "operations", 0-based */
    char *schema;           /* defaults to "public" */
    char *table;
    char *from, *to;        /* rename_column, rename_table */
    char *column;           /* alter_column, drop_column */
    char *type;
    char *up, *down;        /* SQL expressions (rename/alter/add/drop) or statements (sql) */
    char *default_expr;
    int has_default;        /* alter_column, rename_column: "default" present (null: none) */
    char *check;
    int nullable, unique;   /* -1 when not given */
    int copy;               /* rename_column: keep a copy column under the new name on the table
                             * itself, for writers that bypass both shapes' views */
    int if_exists;          /* drop_index, drop_constraint: a missing object is no error */
    int recreate;           /* alter_column: the column is dropped and added again under its name
                             * (DROP COLUMN c, ADD COLUMN c): what depends on the old column goes
                             * with it, as offline; nothing is carried to the new one */
    char *name;             /* create_index, drop_index, create_constraint (NULL: the name Postgres
                             * would choose offline) */
    char **columns;         /* create_index, create_constraint */
    size_t ncolumns;
    char *method;           /* create_index: btree, gin, ... */
    char *where;            /* create_index: partial index predicate */
    char **keys;            /* create_index: index keys as SQL, instead of columns */
    size_t nkeys;
    char **include;         /* create_index: INCLUDE columns */
    size_t ninclude;
    char *storage_parameters; /* create_index: WITH (...) */
    char *constraint_type;  /* create_constraint: check | unique | foreign_key | primary_key */
    int deferrable, initially_deferred; /* create_constraint, unique or primary_key: as Postgres's words */
    char *ref_table;        /* create_constraint foreign_key */
    char **ref_columns;
    size_t nref_columns;
    char *on_delete, *on_update; /* create_constraint foreign_key: an action, upper case */
    struct mig_column col;  /* add_column */
    struct mig_column *cols;/* create_table */
    size_t ncols;
    enum mig_sql_on on;     /* sql */
    int new_shape;          /* sql, on complete: also at start in the new version's schema (a view made again) */
    /* drop_constraint: name; rename_constraint: from, to; set_replica_identity:
     * identity (default | full | nothing | index, the index in name);
     * add_enum_value / rename_enum_value: the enum type in name, the label in
     * value (add) or from, to (rename). */
    char *value;            /* add_enum_value */
    char *before, *after;   /* add_enum_value: the label it goes next to */
    int if_not_exists;      /* add_enum_value: a label already there is no error */
    char *identity;         /* set_replica_identity */
    struct mig_constraint *cons; /* create_table: table constraints */
    size_t ncons;
};

struct mig_backfill_settings {
    long batch_rows;        /* first batch size */
    long min_rows, max_rows;
    long target_ms;         /* adaptive target per batch */
    long max_rows_per_sec;  /* 0 = unlimited */
    double sleep_ratio;     /* sleep this fraction of each batch's duration */
    long lock_timeout_ms;
    long workers;           /* batches at once, each range on its own connection */
    double app_p99_budget;  /* the latency budget's ratio (0: off); the setting's default unless given */
};

struct migration {
    char *file;             /* for messages; may be "<stdin>" */
    char *name;
    char *parent;           /* NULL for the first migration */
    struct mig_op *ops;
    size_t nops;
    struct mig_backfill_settings backfill;
    char checksum[65];      /* sha256 hex of the file bytes */
    char *json;             /* the file text as given */
    /* Written by pgtandem only, in a migration it made by merging pending
     * ones (mig_merge): [{name, parent, checksum, json}] of each, recorded
     * as completed when this one completes. NULL otherwise. */
    char *merges;
};

/* Parses and validates text. On error returns -1 and writes
 * "file:line:col: operations[i].op: message" into err. */
int mig_parse(const char *text, size_t len, const char *file, struct migration *out,
              char *err, size_t errlen);
int mig_load_file(const char *path, struct migration *out, char *err, size_t errlen);
/* Every rename_table that follows an operation naming its table moves in
 * front of them, which then name the table by its new name: each phase
 * finds the table under the name it has when the phase runs
 * (migration_renames_first.c). mig_parse calls it; -1 with a message when
 * an operation the rename cannot move past stands between them. */
int mig_table_renames_first(struct migration *m, char *err, size_t errlen);
/* Two plain renames of one column (a to b, then b to c) with nothing
 * between them naming b or c become one rename a to c where the first
 * stood: one second column filled from the original, which carries its
 * dependents (migration_renames_joined.c). mig_parse calls it after
 * mig_table_renames_first. */
void mig_column_renames_joined(struct migration *m);
/* Frees what op holds (not op itself). */
void mig_op_free(struct mig_op *op);
/* For the rewrites of the operations' list at parse time (the two above):
 * two names are one (both given); and ops[from..to] take their positions
 * as their indexes again, which the planner and the checks read as the
 * operation's place (names of triggers, what comes before it). */
static inline int mig_same_name(const char *a, const char *b)
{
    return a && b && !strcmp(a, b);
}
void mig_ops_renumber(struct migration *m, size_t from, size_t to);
/* sha256 hex of text, as a migration's checksum. */
void mig_checksum(const char *text, size_t len, char out[65]);
/* One migration out of list[0..n) (a chain, parent-first): the last one's
 * name, the first one's parent, every operation in order, the last one's
 * backfill settings, and "merges" naming each, so that one expand, one
 * backfill and one cutover apply them all. */
int mig_merge(const struct migration *list, size_t n, struct migration *out, char *err, size_t errlen);

/* A migration or SQL file read whole (at most 16 MiB; *len excludes the
 * NUL added after it). NULL with "path: ..." in err. Caller frees. */
char *mig_read_file(const char *path, size_t *len, char *err, size_t errlen);
void mig_free(struct migration *m);

const char *mig_op_name(enum mig_op_kind kind);
/* The earlier rename_column of m that frees the name add (an add_column)
 * takes on its table (RENAME COLUMN "kind" TO "legacyKind", then ADD
 * COLUMN "kind"): the plan adds the column under its second column's name
 * (mig_shadow_name) until the contract, where the old release reads the
 * original under the name until then; NULL when none, or when the rename
 * keeps a copy column. */
const struct mig_op *mig_add_column_freed_by(const struct migration *m, const struct mig_op *add);
/* The first operation whose change a revert after complete could not undo
 * without losing what the new release wrote (a dropped column gets no
 * values from it); -1 when every one can be reverted. why says which. */
int mig_revert_blocker(const struct migration *m, char *why, size_t n);
/* The 1-based line and column (in bytes) of at, a position inside text. */
void mig_text_pos(const char *text, const char *at, int *line, int *col);
/* Levenshtein distance, used for "did you mean". */
size_t mig_edit_distance(const char *a, const char *b);

/* Reads every *.json in dir, validates each and the parent chain (one
 * head, no missing parents, no duplicate names). Fills *out / *n sorted
 * parent-first. Returns 0, or -1 with a message. */
int mig_load_dir(const char *dir, struct migration **out, size_t *n, char *err, size_t errlen);
void mig_free_list(struct migration *list, size_t n);
/* A chain sent to a proxy: {"chain": [{"text", "checksum"}, ...]} (each
 * migration's text and its file's checksum). Caller frees. */
char *mig_chain_body(const struct migration *list, size_t n);
/* 1 when text is such a chain: *out / *n filled (validated, parent-first);
 * 0 when it is not one (a single migration); -1 with a message. */
int mig_parse_chain(const char *text, size_t len, struct migration **out, size_t *n, char *err, size_t errlen);
/* The paths "dir/name" of dir's files whose name ends in suffix, sorted by
 * name (numbered files in their order). Free with mig_free_names. */
int mig_list_files(const char *dir, const char *suffix, char ***names, size_t *n, char *err, size_t errlen);
void mig_free_names(char **names, size_t n);

#endif

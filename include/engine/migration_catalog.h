/* What the engine needs to know about the live database before generating
 * SQL: the columns (with their grants and statistics targets), primary key,
 * indexes, foreign keys and every other object depending on a column of
 * each table a migration touches, the foreign keys of other tables that
 * reference a table it drops, and each index it drops. Loaded once (libpq) and then read by the plan
 * generator, so SQL generation itself stays free of I/O. */
#ifndef PGTANDEM_MIGRATION_CATALOG_H
#define PGTANDEM_MIGRATION_CATALOG_H

#include <libpq-fe.h>
#include <stddef.h>

#include "migration.h"

struct mig_cat_column {
    char *name;
    char *type;          /* format_type() text, safe to embed */
    char *default_expr;  /* pg_get_expr() text or NULL */
    char *comment;
    int notnull;
    int stattarget;      /* attstattarget, -1 when default */
    char **grants;       /* column privileges as "PRIVILEGE\tgrantee\tgrantable(t|f)"; grantee "" is PUBLIC */
    size_t ngrants;
    char identity;       /* attidentity: 'a' (ALWAYS), 'd' (BY DEFAULT), 0: not an identity column */
    char generated;      /* attgenerated: 's' (STORED), 0: not a generated column */
    /* The sequence the column owns (serial) or its identity's, regclass
     * text, with its type and, for an identity re-created on a second
     * column, its options as ALTER ... ADD GENERATED takes them (minimum
     * and maximum only when they are not the type's defaults, so a wider
     * type gets its own). NULL when there is none. */
    char *sequence, *sequence_type, *sequence_options;
    int sequence_descending;
};

/* Something in the database that depends on one column of the table
 * (pg_depend), other than the column's own default: what a change of the
 * column's type or a drop must carry or refuse. */
enum mig_dep_kind {
    MIG_DEP_VIEW,        /* view or materialized view reading the column */
    MIG_DEP_INDEX,       /* index on the column (its name) */
    MIG_DEP_CONSTRAINT,  /* constraint involving the column; contype in `contype` */
    MIG_DEP_OTHER,       /* trigger, policy, statistics, sequence, generated column, rule ... */
};

struct mig_cat_dep {
    char *column;
    enum mig_dep_kind kind;
    char *name;          /* view: regclass text; index and constraint: their name */
    char *describe;      /* pg_describe_object() text, for messages */
    char contype;        /* constraints: c, f, u, p, x; else 0 */
    int foreign;         /* the object belongs to another table (views aside) */
    char deptype;        /* 'n': a DROP COLUMN refuses while it exists; 'a': it goes with the column */
    unsigned int oid;    /* the object (a view: its relation, whose oid is its creation order); one
                          * entry per column and object */
    /* Filled by the rehearsal of a change of the column's type
     * (migration_dependents.h); all NULL when there was none. */
    char *carry;         /* CHECK: its definition over the second column; index: its definition from
                          * USING on, over the second column; view: the script that re-creates it */
    char *carry_drop;    /* view: the statement that drops it */
    char *refusal;       /* why it cannot be carried to the new type, and what to do */
    int validated;       /* CHECK: the constraint was valid (convalidated) */
};

struct mig_cat_index {
    char *name;
    char *method;
    char **cols;         /* NULL entries never; only simple indexes keep columns */
    size_t ncols;
    char *constraint;    /* name of the UNIQUE constraint it backs, or NULL */
    int unique, primary, simple;
};

/* A single-column foreign key. For keys of this table, column is ours and
 * ref_* the referenced side; for keys pointing at this table (in_fk),
 * column is our referenced column and ref_* the referencing side. */
struct mig_cat_fkey {
    char *name;
    char *column;
    char *ref_table;     /* regclass text, already quoted by Postgres */
    char *ref_column;
    char on_delete, on_update;
};

/* A foreign key of another table, any number of columns, that needs an
 * object of ours (a table referenced, an index it looks rows up by): what
 * makes Postgres refuse to drop that object (2BP01) while it exists. */
struct mig_cat_ref {
    char *name;          /* the constraint */
    char *schema, *table;/* the referencing table, unquoted */
    char **cols;         /* its columns on the referencing table */
    size_t ncols;
};

/* A partition of a partitioned table, at any depth (pg_inherits). */
struct mig_cat_partition {
    char *schema, *name;
    char relkind;        /* 'r', 'p' (partitioned itself), 'f' (foreign) */
    int parent;          /* index in parts of its partitioned parent; -1: the table itself */
    char **taken;        /* relation names in its schema sharing its name's first 20 characters
                          * (what a name Postgres chooses for its index must avoid) */
    size_t ntaken;
    char **attached;     /* its indexes attached to an index of its parent ... */
    char **attached_to;  /* ... that one's name, for each */
    size_t nattached;
};

struct mig_cat_table {
    char *schema, *name;
    int exists;
    char relkind;        /* 'r', or 'p' for a partitioned table */
    struct mig_cat_column *cols;
    size_t ncols;
    char **pk, **pk_types;
    size_t npk;
    struct mig_cat_index *idx;
    size_t nidx;
    struct mig_cat_fkey *fk;
    size_t nfk;
    struct mig_cat_fkey *in_fk;
    size_t nin_fk;
    struct mig_cat_dep *deps;
    size_t ndeps;
    struct mig_cat_ref *refs;   /* other tables' foreign keys referencing this one (not its own) */
    size_t nrefs;
    double est_rows;
    int empty;                  /* it had no row when the catalog was read (asked only by add_column) */
    /* The rank of the tandem triggers a migration adds to it: 0 on a table
     * no migration in flight has triggers on, else one past theirs, so that
     * Postgres, firing a table's triggers in name order, runs a migration's
     * after those of the migrations it builds on (plan_trigger.c). */
    int trigger_rank;
    /* Its shape as a migration in flight that the one being planned is
     * built on shows it (its version schema's view; shape_of names that
     * migration, NULL when none in flight changes the table): the columns
     * in their order, each under the name it shows (shown) and the table's
     * column it reads (phys). A column of the table not listed is hidden
     * there (renamed away, retyped into a second column, dropped). Read
     * by migration_catalog_shape.c; the plan builds the new migration's
     * views on it (plan_on_shape.c). */
    char *shape_of;
    struct mig_cat_shape_col {
        char *phys, *shown;
    } *shape;
    size_t nshape;
    /* The columns the migrations in flight below that do more than add
     * to the table name or read (mig_op_columns; "*": any), which a
     * migration built on them may not change: their triggers read them by
     * name, before its own. reads_of names the newest of them. */
    char **shape_reads;
    size_t nshape_reads;
    char *reads_of;
    /* A column such a migration may retype in place at its complete
     * (mig_op_retypes_in_place): Postgres does not retype a column a view
     * reads, and the views of a migration built on it read every column
     * its shape shows. NULL when none. */
    char *retyped_in_place;
    /* Plain renames below (mig_op_renames_plainly) whose new name the
     * migration being planned names: its expand renames the column in the
     * table first ("brought forward"), so its triggers, backfill and
     * contract read the name that stays, and the contract of the one below
     * finds the rename done. cols and shape already carry the new name;
     * `from` is the column's name in the table until that expand. */
    struct mig_cat_forward {
        char *from, *to, *by;
    } *forward;
    size_t nforward;
    /* Why such a rename could not be brought forward (for the refusal of
     * the name), or NULL. */
    char *not_forward;
    /* A partitioned table: its partitions, parents before their own, and
     * the columns named in its partition key or a partition's (by name;
     * plain or in an expression). */
    struct mig_cat_partition *parts;
    size_t nparts;
    char **partkey;
    size_t npartkey;
    int partkey_exprs;   /* one of those keys has an expression */
};

/* 1 when a migration in flight below names column `name` of t (its
 * triggers may read it; "*": any): a change of it gets a trigger run
 * twice, its `down` before theirs and its `up` after (plan_trigger.c),
 * and a rename of it is not brought forward. */
int mig_catalog_reads_column(const struct mig_cat_table *t, const char *name);
/* The name column `name` of t has in the table until the expand that
 * brings its rename forward, or NULL when that is its name already. */
const char *mig_catalog_forward_from(const struct mig_cat_table *t, const char *name);

/* An index a drop_index names, looked up by schema and name. */
struct mig_cat_named_index {
    char *schema, *name;
    int exists;
    char relkind;        /* 'i', or 'I' for a partitioned table's index */
    char *table;         /* its table, schema-qualified and quoted (regclass text) */
    char *constraint;    /* the PRIMARY KEY, UNIQUE or EXCLUDE constraint it backs, or NULL */
    char contype;        /* that constraint's: 'p', 'u', 'x' */
    char *parent;        /* the partitioned table's index it is attached to (regclass text), or NULL */
    struct mig_cat_ref *fkeys;  /* foreign keys that look referenced rows up through it */
    size_t nfkeys;
};

/* A constraint a drop_constraint or rename_constraint names (and the name a
 * rename_constraint gives), looked up on its table as the catalog has it
 * before the migration (a table this migration renames: its old name). */
struct mig_cat_constraint {
    char *schema, *table, *name;
    int exists;
    char contype;        /* c, f, p, u, x, t (a constraint trigger) */
    int inherited;       /* coninhcount > 0: Postgres refuses to drop or rename it on this table alone */
    char *index;         /* the index behind a p, u or x constraint, or NULL */
    int relation_taken;  /* a relation (table, index, view, sequence ...) of this name is in the schema */
    struct mig_cat_ref *fkeys;  /* foreign keys that look rows up through its index (p, u) */
    size_t nfkeys;
};

/* An index a set_replica_identity names, with what Postgres requires of a
 * replica identity index. */
struct mig_cat_ident_index {
    char *schema, *table, *name;
    int exists;
    char *on_table;      /* the table it is on (regclass text) */
    int on_this_table;
    int unique, partial, expressions, immediate, valid;
    char **nullable;     /* its key columns without NOT NULL */
    size_t nnullable;
};

/* An enum type an add_enum_value or rename_enum_value names. */
struct mig_cat_enum {
    char *schema, *name;
    int exists;          /* a type of that name exists */
    int is_enum;
    char **labels;       /* in their order */
    size_t nlabels;
};

/* The names taken in a schema a migration touches, sorted (strcmp order):
 * relations (tables, indexes, views, sequences ...) and constraints, which
 * Postgres consults to choose the name of a constraint or index the DDL
 * does not name (ChooseConstraintName, ChooseRelationName). */
struct mig_cat_names {
    char *schema;
    char **rels, **cons;
    size_t nrels, ncons;
};

struct mig_catalog {
    struct mig_cat_table *tables;
    size_t n;
    struct mig_cat_named_index *indexes;  /* one per index a drop_index or create_index names */
    size_t nindexes;
    /* Per operation, by index: 1 when the add_column's default as written
     * would make Postgres rewrite the table (a volatile default, a domain
     * with constraints), as the engine's probe found (engine.c); NULL when
     * nothing was probed. */
    unsigned char *default_rewrites;
    size_t ndefault_rewrites;
    /* Per operation, by index: 1 when the alter_column / rename_column
     * changes the column's type with no up or down and Postgres makes that
     * change in the catalog alone, rewriting neither the table nor an
     * index (varchar(n) to a longer varchar or text, numeric precision
     * widened ...), as the engine's probe found. NULL: nothing probed. */
    unsigned char *retype_in_place;
    size_t nretype_in_place;
    struct mig_cat_constraint *constraints;  /* drop_constraint, rename_constraint (from and to), create_constraint */
    size_t nconstraints;
    struct mig_cat_ident_index *ident_indexes; /* set_replica_identity */
    size_t nident_indexes;
    struct mig_cat_enum *enums;              /* add_enum_value, rename_enum_value */
    size_t nenums;
    struct mig_cat_names *names;          /* one per schema an operation names */
    size_t nnames;
};

/* Loads every table named by m's operations and every index its
 * drop_index operations name. Returns 0, or -1 with err. */
int mig_catalog_load(PGconn *conn, const struct migration *m, struct mig_catalog *cat,
                     char *err, size_t errlen);
void mig_catalog_free(struct mig_catalog *cat);
struct mig_cat_table *mig_catalog_table(const struct mig_catalog *cat, const char *schema,
                                        const char *name);
struct mig_cat_column *mig_catalog_column(const struct mig_cat_table *t, const char *name);
struct mig_cat_index *mig_catalog_index(const struct mig_cat_table *t, const char *name);
/* 1 when name is a constraint's name in schema, or (relations set) a
 * relation's; 0 when free or the schema was not read. */
int mig_catalog_name_taken(const struct mig_catalog *cat, const char *schema, const char *name, int relations);
const struct mig_cat_named_index *mig_catalog_named_index(const struct mig_catalog *cat, const char *schema,
                                                          const char *name);
/* table: its name in the catalog before the migration. */
const struct mig_cat_constraint *mig_catalog_constraint(const struct mig_catalog *cat, const char *schema,
                                                        const char *table, const char *name);
const struct mig_cat_ident_index *mig_catalog_ident_index(const struct mig_catalog *cat, const char *schema,
                                                          const char *table, const char *name);
const struct mig_cat_enum *mig_catalog_enum(const struct mig_catalog *cat, const char *schema, const char *name);
/* Internal to the catalog (migration_catalog_objects.c): what op names
 * besides its table's columns, loaded by mig_catalog_load and freed by
 * mig_catalog_free. */
int mig_catalog_load_objects(PGconn *conn, const struct migration *m, const struct mig_op *op,
                             struct mig_catalog *cat, char *err, size_t errlen);
void mig_catalog_free_objects(struct mig_catalog *cat);
/* Internal to the catalog (migration_catalog_shape.c): each table's shape
 * as the newest migration in flight that m is built on shows it, loaded
 * by mig_catalog_load; freed with its table. */
int mig_catalog_load_shapes(PGconn *conn, const struct migration *m, struct mig_catalog *cat, char *err,
                            size_t errlen);
void mig_catalog_free_shape(struct mig_cat_table *t);

/* Internal to the catalog (migration_catalog_partitions.c): a
 * partitioned table's partitions (none for another table), loaded with
 * the table and freed with it. */
int mig_catalog_load_partitions(PGconn *conn, struct mig_cat_table *t, char *err, size_t errlen);
void mig_catalog_free_partitions(struct mig_cat_table *t);
/* Internal to the catalog, shared by its readers: one of the table's queries (schema and
 * name as $1, $2), and a JSON array of names as text into *out (empty on
 * NULL text or out of memory). */
PGresult *mig_catalog_query_table(PGconn *conn, const char *sql, const struct mig_cat_table *t,
                                  char *err, size_t errlen);
void mig_catalog_json_names(const char *text, char ***out, size_t *n);

#endif

/* What the engine needs to know about the live database before generating
 * SQL: the columns, primary key, indexes and foreign keys of every table a
 * migration touches. Loaded once (libpq) and then read by the plan
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

struct mig_cat_table {
    char *schema, *name;
    int exists;
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
    double est_rows;
};

struct mig_catalog {
    struct mig_cat_table *tables;
    size_t n;
};

/* Loads every table named by m's operations. Returns 0, or -1 with err. */
int mig_catalog_load(PGconn *conn, const struct migration *m, struct mig_catalog *cat,
                     char *err, size_t errlen);
void mig_catalog_free(struct mig_catalog *cat);
struct mig_cat_table *mig_catalog_table(const struct mig_catalog *cat, const char *schema,
                                        const char *name);
struct mig_cat_column *mig_catalog_column(const struct mig_cat_table *t, const char *name);

#endif

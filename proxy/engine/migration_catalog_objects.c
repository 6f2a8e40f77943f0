/* The catalog of the objects some operations name apart from their table's
 * columns: a constraint (drop_constraint, rename_constraint), a replica
 * identity index (set_replica_identity), an enum type and its labels
 * (add_enum_value, rename_enum_value). Each is one small query by name,
 * run only for the migrations that name one, so that the plan can refuse
 * before any DDL what Postgres would refuse at the contract. */
#include "migration_catalog.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A constraint by table and name: its kind, whether it is inherited (a
 * partition's copy of its parent's), the index behind it, and the foreign
 * keys that look rows up through that index (each once, not once per
 * partition of a partitioned referencing table); and whether a relation of
 * the same name is in the schema (what renaming an index to it would hit). */
static const char *CONSTRAINT_SQL =
    "SELECT con.contype::text, con.coninhcount > 0, ic.relname,"
    "       (SELECT json_agg(json_build_array(f.conname, fn.nspname, fc.relname,"
    "               (SELECT json_agg(a.attname ORDER BY k.o) FROM unnest(f.conkey) WITH ORDINALITY k(n, o)"
    "                  JOIN pg_attribute a ON a.attrelid = f.conrelid AND a.attnum = k.n))"
    "               ORDER BY fn.nspname, fc.relname, f.conname)"
    "          FROM pg_constraint f JOIN pg_class fc ON fc.oid = f.conrelid"
    "          JOIN pg_namespace fn ON fn.oid = fc.relnamespace"
    "         WHERE f.contype = 'f' AND con.contype IN ('p', 'u') AND f.conindid = con.conindid"
    "           AND NOT EXISTS (SELECT 1 FROM pg_constraint p WHERE p.oid = f.conparentid"
    "                            AND p.conindid = f.conindid))::text,"
    "       EXISTS (SELECT 1 FROM pg_class r WHERE r.relnamespace = n.oid AND r.relname = $3)"
    "  FROM pg_namespace n"
    "  LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = $2"
    "  LEFT JOIN pg_constraint con ON con.conrelid = c.oid AND con.conname = $3"
    "  LEFT JOIN pg_class ic ON ic.oid = con.conindid AND con.contype IN ('p', 'u', 'x')"
    " WHERE n.nspname = $1";

/* An index by name, with what ALTER TABLE ... REPLICA IDENTITY USING INDEX
 * requires of it: on the table, unique, immediate, no predicate, no
 * expression, valid, every key column NOT NULL. */
static const char *IDENT_INDEX_SQL =
    "SELECT i.indrelid::regclass::text,"
    "       i.indrelid = (SELECT c.oid FROM pg_class c WHERE c.relnamespace = n.oid AND c.relname = $2),"
    "       i.indisunique, i.indpred IS NOT NULL, i.indexprs IS NOT NULL, i.indimmediate, i.indisvalid,"
    "       (SELECT json_agg(a.attname ORDER BY k.o) FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o)"
    "          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n"
    "         WHERE k.o <= i.indnkeyatts AND NOT a.attnotnull)::text"
    "  FROM pg_class ic JOIN pg_namespace n ON n.oid = ic.relnamespace"
    "  JOIN pg_index i ON i.indexrelid = ic.oid"
    " WHERE n.nspname = $1 AND ic.relname = $3";

static const char *ENUM_SQL =
    "SELECT t.typtype::text,"
    "       (SELECT json_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid)::text"
    "  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
    " WHERE n.nspname = $1 AND t.typname = $2";

static char *dup_or_null(const PGresult *r, int col)
{
    return PQgetisnull(r, 0, col) ? NULL : strdup(PQgetvalue(r, 0, col));
}

static int is_true(const PGresult *r, int col)
{
    return !PQgetisnull(r, 0, col) && PQgetvalue(r, 0, col)[0] == 't';
}

static PGresult *query(PGconn *conn, const char *sql, int n, const char *const *params, char *err, size_t errlen)
{
    PGresult *r = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "reading the catalog of %s.%s: %s", params[0], params[1], PQerrorMessage(conn));
        PQclear(r);
        return NULL;
    }
    return r;
}

static void free_strs(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void parse_names(const char *text, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    json_t *arr = text ? json_loads(text, 0, NULL) : NULL;
    size_t len = json_array_size(arr);
    if (len > 0 && (*out = calloc(len, sizeof(char *))) != NULL)
        for (size_t i = 0; i < len; i++) {
            const char *s = json_string_value(json_array_get(arr, i));
            (*out)[(*n)++] = strdup(s ? s : "");
        }
    json_decref(arr);
}

/* [[conname, schema, table, [column, ...]], ...] */
static void parse_fkeys(const char *text, struct mig_cat_ref **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    json_t *arr = text ? json_loads(text, 0, NULL) : NULL;
    size_t len = json_array_size(arr);
    if (len > 0 && (*out = calloc(len, sizeof **out)) != NULL)
        for (size_t i = 0; i < len; i++) {
            json_t *e = json_array_get(arr, i);
            struct mig_cat_ref *f = &(*out)[(*n)++];
            const char *parts[3];
            for (size_t k = 0; k < 3; k++)
                parts[k] = json_string_value(json_array_get(e, k));
            f->name = strdup(parts[0] ? parts[0] : "");
            f->schema = strdup(parts[1] ? parts[1] : "");
            f->table = strdup(parts[2] ? parts[2] : "");
            char *cols = json_dumps(json_array_get(e, 3), JSON_ENCODE_ANY);
            parse_names(cols, &f->cols, &f->ncols);
            free(cols);
        }
    json_decref(arr);
}

const struct mig_cat_constraint *mig_catalog_constraint(const struct mig_catalog *cat, const char *schema,
                                                        const char *table, const char *name)
{
    for (size_t i = 0; cat && i < cat->nconstraints; i++) {
        const struct mig_cat_constraint *k = &cat->constraints[i];
        if (!strcmp(k->schema, schema) && !strcmp(k->table, table) && !strcmp(k->name, name))
            return k;
    }
    return NULL;
}

const struct mig_cat_ident_index *mig_catalog_ident_index(const struct mig_catalog *cat, const char *schema,
                                                          const char *table, const char *name)
{
    for (size_t i = 0; cat && i < cat->nident_indexes; i++) {
        const struct mig_cat_ident_index *x = &cat->ident_indexes[i];
        if (!strcmp(x->schema, schema) && !strcmp(x->table, table) && !strcmp(x->name, name))
            return x;
    }
    return NULL;
}

const struct mig_cat_enum *mig_catalog_enum(const struct mig_catalog *cat, const char *schema, const char *name)
{
    for (size_t i = 0; cat && i < cat->nenums; i++)
        if (!strcmp(cat->enums[i].schema, schema) && !strcmp(cat->enums[i].name, name))
            return &cat->enums[i];
    return NULL;
}

/* Grows *v by one zeroed element of size sz; NULL when out of memory. */
static void *grow(void **v, size_t *n, size_t sz, char *err, size_t errlen)
{
    char *g = realloc(*v, (*n + 1) * sz);
    if (!g) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    *v = g;
    memset(g + *n * sz, 0, sz);
    return g + (*n)++ * sz;
}

static int add_constraint(PGconn *conn, struct mig_catalog *cat, const char *schema, const char *table,
                          const char *name, char *err, size_t errlen)
{
    if (!name || !table || mig_catalog_constraint(cat, schema, table, name))
        return 0;
    struct mig_cat_constraint *k = grow((void **)&cat->constraints, &cat->nconstraints, sizeof *k, err, errlen);
    if (!k)
        return -1;
    k->schema = strdup(schema);
    k->table = strdup(table);
    k->name = strdup(name);
    const char *params[3] = {schema, table, name};
    PGresult *r = query(conn, CONSTRAINT_SQL, 3, params, err, errlen);
    if (!r)
        return -1;
    if (PQntuples(r) > 0) {
        k->exists = !PQgetisnull(r, 0, 0);
        k->contype = k->exists ? PQgetvalue(r, 0, 0)[0] : 0;
        k->inherited = is_true(r, 1);
        k->index = dup_or_null(r, 2);
        parse_fkeys(PQgetisnull(r, 0, 3) ? NULL : PQgetvalue(r, 0, 3), &k->fkeys, &k->nfkeys);
        k->relation_taken = is_true(r, 4);
    }
    PQclear(r);
    return 0;
}

static int add_ident_index(PGconn *conn, struct mig_catalog *cat, const char *schema, const char *table,
                           const char *name, char *err, size_t errlen)
{
    if (!name || !table || mig_catalog_ident_index(cat, schema, table, name))
        return 0;
    struct mig_cat_ident_index *x = grow((void **)&cat->ident_indexes, &cat->nident_indexes, sizeof *x, err,
                                         errlen);
    if (!x)
        return -1;
    x->schema = strdup(schema);
    x->table = strdup(table);
    x->name = strdup(name);
    const char *params[3] = {schema, table, name};
    PGresult *r = query(conn, IDENT_INDEX_SQL, 3, params, err, errlen);
    if (!r)
        return -1;
    if (PQntuples(r) > 0) {
        x->exists = 1;
        x->on_table = dup_or_null(r, 0);
        x->on_this_table = is_true(r, 1);
        x->unique = is_true(r, 2);
        x->partial = is_true(r, 3);
        x->expressions = is_true(r, 4);
        x->immediate = is_true(r, 5);
        x->valid = is_true(r, 6);
        parse_names(PQgetisnull(r, 0, 7) ? NULL : PQgetvalue(r, 0, 7), &x->nullable, &x->nnullable);
    }
    PQclear(r);
    return 0;
}

static int add_enum(PGconn *conn, struct mig_catalog *cat, const char *schema, const char *name, char *err,
                    size_t errlen)
{
    if (mig_catalog_enum(cat, schema, name))
        return 0;
    struct mig_cat_enum *e = grow((void **)&cat->enums, &cat->nenums, sizeof *e, err, errlen);
    if (!e)
        return -1;
    e->schema = strdup(schema);
    e->name = strdup(name);
    const char *params[2] = {schema, name};
    PGresult *r = query(conn, ENUM_SQL, 2, params, err, errlen);
    if (!r)
        return -1;
    if (PQntuples(r) > 0) {
        e->exists = 1;
        e->is_enum = PQgetvalue(r, 0, 0)[0] == 'e';
        parse_names(PQgetisnull(r, 0, 1) ? NULL : PQgetvalue(r, 0, 1), &e->labels, &e->nlabels);
    }
    PQclear(r);
    return 0;
}

/* The name op's table has in the catalog: a rename_table earlier in the
 * migration gave it the one op uses. */
static const char *table_in_catalog(const struct migration *m, const struct mig_op *op)
{
    const char *name = op->table;
    for (int i = op->index - 1; i >= 0; i--) {
        const struct mig_op *o = &m->ops[i];
        if (o->kind == MIG_RENAME_TABLE && !strcmp(o->schema, op->schema) && !strcmp(o->to, name))
            name = o->from;
    }
    return name;
}

int mig_catalog_load_objects(PGconn *conn, const struct migration *m, const struct mig_op *op,
                             struct mig_catalog *cat, char *err, size_t errlen)
{
    const char *table = op->table ? table_in_catalog(m, op) : NULL;
    switch (op->kind) {
    case MIG_DROP_CONSTRAINT:
    case MIG_CREATE_CONSTRAINT: /* its name may be taken until an earlier operation frees it */
        return add_constraint(conn, cat, op->schema, table, op->name, err, errlen);
    case MIG_RENAME_CONSTRAINT:
        return add_constraint(conn, cat, op->schema, table, op->from, err, errlen) ||
               add_constraint(conn, cat, op->schema, table, op->to, err, errlen);
    case MIG_SET_REPLICA_IDENTITY:
        return add_ident_index(conn, cat, op->schema, table, op->name, err, errlen);
    case MIG_ADD_ENUM_VALUE:
    case MIG_RENAME_ENUM_VALUE:
        return add_enum(conn, cat, op->schema, op->name, err, errlen);
    default:
        return 0;
    }
}

void mig_catalog_free_objects(struct mig_catalog *cat)
{
    for (size_t i = 0; i < cat->nconstraints; i++) {
        struct mig_cat_constraint *k = &cat->constraints[i];
        free(k->schema); free(k->table); free(k->name); free(k->index);
        for (size_t j = 0; j < k->nfkeys; j++) {
            free(k->fkeys[j].name); free(k->fkeys[j].schema); free(k->fkeys[j].table);
            free_strs(k->fkeys[j].cols, k->fkeys[j].ncols);
        }
        free(k->fkeys);
    }
    free(cat->constraints);
    for (size_t i = 0; i < cat->nident_indexes; i++) {
        struct mig_cat_ident_index *x = &cat->ident_indexes[i];
        free(x->schema); free(x->table); free(x->name); free(x->on_table);
        free_strs(x->nullable, x->nnullable);
    }
    free(cat->ident_indexes);
    for (size_t i = 0; i < cat->nenums; i++) {
        free(cat->enums[i].schema); free(cat->enums[i].name);
        free_strs(cat->enums[i].labels, cat->enums[i].nlabels);
    }
    free(cat->enums);
    cat->constraints = NULL;
    cat->ident_indexes = NULL;
    cat->enums = NULL;
    cat->nconstraints = cat->nident_indexes = cat->nenums = 0;
}

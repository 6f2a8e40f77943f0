/* The shape a migration is built on (migration_catalog.h, shape_of): a
 * migration started on top of one in flight that renames, retypes or drops
 * a column of a table sees that table as the one below shows it, not as
 * the table is. The truth of that shape is the version schema's view the
 * migration below made: it is read back from Postgres (pg_get_viewdef,
 * parsed by Postgres's own parser) rather than planned again, so what the
 * release built on it reads is what the new migration builds on. */
#include "migration_catalog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migration_flight.h"
#include "migration_lifecycle.h"
#include "migration_names.h"
#include "migration_state.h"
#include "sql_script.h"

/* The migrations in flight m is built on, newest first: its parent and
 * the parent's parents while they are in flight. */
#define LINE_SQL_FMT \
    "WITH RECURSIVE line AS (" \
    "  SELECT name, parent, 1 AS depth FROM pgtandem.migrations WHERE name = $1 AND status IN (%s)" \
    "  UNION ALL" \
    "  SELECT g.name, g.parent, l.depth + 1 FROM pgtandem.migrations g JOIN line l ON g.name = l.parent" \
    "   WHERE g.status IN (%s) AND l.depth < 64)" \
    "SELECT l.name, g.migration FROM line l JOIN pgtandem.migrations g ON g.name = l.name ORDER BY l.depth"

static const char *VIEW_SQL =
    "SELECT pg_get_viewdef(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind = 'v'";

static void free_shape(struct mig_cat_table *t)
{
    for (size_t i = 0; t->shape && i < t->nshape; i++) {
        free(t->shape[i].phys);
        free(t->shape[i].shown);
    }
    free(t->shape);
    free(t->shape_of);
    for (size_t i = 0; t->shape_reads && i < t->nshape_reads; i++)
        free(t->shape_reads[i]);
    free(t->shape_reads);
    free(t->reads_of);
    free(t->retyped_in_place);
    t->retyped_in_place = NULL;
    t->shape = NULL;
    t->shape_of = NULL;
    t->shape_reads = NULL;
    t->reads_of = NULL;
    t->nshape = t->nshape_reads = 0;
}

void mig_catalog_free_shape(struct mig_cat_table *t)
{
    free_shape(t);
}

/* One select-list item of our views: `t.col` or `t.col AS name`; 0 when
 * the item is anything else (the view was not made by a migration, or
 * by hand since). */
static int read_item(json_t *item, struct mig_cat_shape_col *out)
{
    json_t *rt = sql_node_fields(item, "ResTarget");
    json_t *ref = rt ? sql_node_fields(json_object_get(rt, "val"), "ColumnRef") : NULL;
    json_t *fields = ref ? json_object_get(ref, "fields") : NULL;
    size_t n = json_array_size(fields);
    const char *phys = n ? sql_node_str(json_array_get(fields, n - 1)) : NULL;
    if (!phys)
        return 0;
    const char *shown = json_string_value(json_object_get(rt, "name"));
    out->phys = strdup(phys);
    out->shown = strdup(shown ? shown : phys);
    return 1;
}

/* The view's definition, as Postgres prints it, into t's shape. */
static int read_view(struct mig_cat_table *t, const char *of, const char *def, char *err, size_t errlen)
{
    struct sql_script sc;
    char why[256];
    if (sql_script_parse(&sc, "view", def, strlen(def), why, sizeof why) != 0)
        return snprintf(err, errlen, "reading the shape of %s.%s that migration %s shows: %s", t->schema,
                        t->name, of, why), -1;
    json_t *list = sc.nstmts == 1 && !strcmp(sc.stmts[0].kind, "SelectStmt")
                       ? json_object_get(sc.stmts[0].body, "targetList") : NULL;
    size_t n = json_array_size(list);
    t->shape = n ? calloc(n, sizeof *t->shape) : NULL;
    t->shape_of = strdup(of);
    int ok = n && t->shape && t->shape_of;
    for (size_t i = 0; ok && i < n; i++)
        ok = read_item(json_array_get(list, i), &t->shape[t->nshape++]) &&
             t->shape[t->nshape - 1].phys && t->shape[t->nshape - 1].shown;
    sql_script_free(&sc);
    if (!ok) {
        free_shape(t);
        return snprintf(err, errlen, "the view %s.%s of migration %s is not one a migration made (a column of it"
                        " is not a column of the table): its shape cannot be built on", t->schema, t->name, of), -1;
    }
    return 0;
}

/* The newest of `line` that has a view of t, read into t's shape. */
static int load_table_shape(PGconn *conn, struct mig_cat_table *t, PGresult *line, char *err, size_t errlen)
{
    for (int i = 0; i < PQntuples(line); i++) {
        const char *of = PQgetvalue(line, i, 0);
        char schema[80];
        mig_version_schema(of, schema, sizeof schema);
        const char *params[2] = {schema, t->name};
        PGresult *r = PQexecParams(conn, VIEW_SQL, 2, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            snprintf(err, errlen, "reading the view %s.%s: %s", schema, t->name, PQerrorMessage(conn));
            PQclear(r);
            return -1;
        }
        int found = PQntuples(r) == 1;
        int rc = found ? read_view(t, of, PQgetvalue(r, 0, 0), err, errlen) : 0;
        PQclear(r);
        if (found || rc != 0)
            return rc;
    }
    return 0;
}

struct reads {
    struct mig_cat_table *t;
    int oom;
};

static void add_read(const char *name, int changes, void *arg)
{
    (void)changes;
    struct reads *r = arg;
    for (size_t i = 0; i < r->t->nshape_reads; i++)
        if (!strcmp(r->t->shape_reads[i], name))
            return;
    char **grown = realloc(r->t->shape_reads, (r->t->nshape_reads + 1) * sizeof *grown);
    char *copy = grown ? strdup(name) : NULL;
    if (grown)
        r->t->shape_reads = grown;
    if (!copy) {
        r->oom = 1;
        return;
    }
    r->t->shape_reads[r->t->nshape_reads++] = copy;
}

/* What the migrations of `line` that do more than add name of each
 * table, into its shape_reads. */
static int load_reads(struct mig_catalog *cat, PGresult *line, char *err, size_t errlen)
{
    for (int i = 0; i < PQntuples(line); i++) {
        const char *of = PQgetvalue(line, i, 0), *json = PQgetvalue(line, i, 1);
        struct migration below;
        if (mig_parse(json, strlen(json), of, &below, err, errlen) != 0) {
            mig_free(&below);
            return -1;
        }
        int oom = 0;
        for (size_t k = 0; !mig_adds_only(&below) && k < below.nops && !oom; k++) {
            const struct mig_op *op = &below.ops[k];
            struct mig_cat_table *t = op->table ? mig_catalog_table(cat, op->schema, op->table) : NULL;
            if (!t)
                continue;
            struct reads r = {.t = t};
            mig_op_columns(op, add_read, &r);
            if (!t->reads_of)
                t->reads_of = strdup(of);
            if (mig_op_retypes_in_place(op) && !t->retyped_in_place && mig_op_column(op))
                oom |= !(t->retyped_in_place = strdup(mig_op_column(op)));
            oom |= r.oom || !t->reads_of;
        }
        mig_free(&below);
        if (oom)
            return snprintf(err, errlen, "out of memory"), -1;
    }
    return 0;
}

int mig_catalog_load_shapes(PGconn *conn, const struct migration *m, struct mig_catalog *cat, char *err,
                            size_t errlen)
{
    if (!m->parent || cat->n == 0 || !mig_state_exists(conn))
        return 0;
    char statuses[MIG_STATUS_SQL_LIST_MAX], sql[sizeof LINE_SQL_FMT + 2 * MIG_STATUS_SQL_LIST_MAX];
    if (mig_status_sql_list(MIG_SET_IN_PROGRESS, statuses, sizeof statuses) < 0)
        return snprintf(err, errlen, "the statuses in progress do not fit their buffer"), -1;
    snprintf(sql, sizeof sql, LINE_SQL_FMT, statuses, statuses);
    const char *params[1] = {m->parent};
    PGresult *line = PQexecParams(conn, sql, 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(line) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "reading the migrations %s is built on: %s", m->name, PQerrorMessage(conn));
        PQclear(line);
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < cat->n && PQntuples(line); i++)
        if (cat->tables[i].exists)
            rc = load_table_shape(conn, &cat->tables[i], line, err, errlen);
    if (rc == 0)
        rc = load_reads(cat, line, err, errlen);
    PQclear(line);
    return rc;
}

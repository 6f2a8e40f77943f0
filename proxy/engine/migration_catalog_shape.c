/* The shape a migration is built on (migration_catalog.h, shape_of): a
 * migration started on top of one in flight that renames, retypes or drops
 * a column of a table sees that table as the one below shows it, not as
 * the table is. The truth of that shape is the version schema's view the
 * migration below made: it is read back from Postgres (pg_get_viewdef,
 * parsed by Postgres's own parser) rather than planned again, so what the
 * release built on it reads is what the new migration builds on. */
#include "migration_catalog.h"

#include <stdarg.h>
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

static void forward_free(struct mig_cat_forward *f)
{
    free(f->from);
    free(f->to);
    free(f->by);
}

static int forward_copy(struct mig_cat_forward *f, const char *from, const char *to, const char *by)
{
    *f = (struct mig_cat_forward){strdup(from), strdup(to), strdup(by)};
    if (f->from && f->to && f->by)
        return 0;
    forward_free(f);
    return -1;
}

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
    for (size_t i = 0; t->forward && i < t->nforward; i++)
        forward_free(&t->forward[i]);
    free(t->forward);
    free(t->not_forward);
    t->forward = NULL;
    t->nforward = 0;
    t->not_forward = NULL;
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

/* The plain renames of `line` (mig_op_renames_plainly): what may be
 * brought forward. */
struct renames {
    struct rename {
        struct mig_cat_table *t;
        struct mig_cat_forward r;
    } *v;
    size_t n;
};

static int add_rename(struct renames *rs, struct mig_cat_table *t, const struct mig_op *op, const char *by)
{
    struct rename *grown = realloc(rs->v, (rs->n + 1) * sizeof *grown);
    if (!grown)
        return -1;
    rs->v = grown;
    rs->v[rs->n].t = t;
    if (forward_copy(&rs->v[rs->n].r, op->from, op->to, by) != 0)
        return -1;
    rs->n++;
    return 0;
}

static void free_renames(struct renames *rs)
{
    for (size_t i = 0; i < rs->n; i++)
        forward_free(&rs->v[i].r);
    free(rs->v);
}

/* What the migrations of `line` that do more than add name of each
 * table, into its shape_reads; their plain renames into rs (they read
 * nothing: no trigger, no backfill). */
static int load_reads(struct mig_catalog *cat, PGresult *line, struct renames *rs, char *err, size_t errlen)
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
            if (mig_op_renames_plainly(op))
                r.oom = add_rename(rs, t, op, of) != 0;
            else
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

/* ---- plain renames brought forward ---- */

/* What depends on a column besides its own default and sequence and the
 * views of migrations in flight (which follow a rename by themselves):
 * indexes, constraints, other views, policies, triggers. */
static const char DEPENDENTS_SQL[] =
    "SELECT coalesce(string_agg(pg_describe_object(d.classid, d.objid, d.objsubid), ', ' ORDER BY d.objid), '')"
    "  FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid"
    " WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = format('%I.%I', $1::text, $2::text)::regclass"
    "   AND a.attname = $3 AND d.deptype IN ('n', 'a') AND d.classid <> 'pg_attrdef'::regclass"
    "   AND NOT (d.classid = 'pg_class'::regclass"
    "            AND EXISTS (SELECT 1 FROM pg_class s WHERE s.oid = d.objid AND s.relkind = 'S'))"
    "   AND NOT (d.classid = 'pg_rewrite'::regclass"
    "            AND EXISTS (SELECT 1 FROM pg_rewrite w JOIN pg_class v ON v.oid = w.ev_class"
    "                        JOIN pg_namespace n ON n.oid = v.relnamespace"
    "                        WHERE w.oid = d.objid AND n.nspname LIKE 'pgtandem\\_%'))";

/* The tandem triggers of the migrations in flight on the table whose
 * functions name the column (quoted, as the plan writes every name it
 * binds: plan_trigger.c binds the columns its expressions read; an older
 * function may bind every column). */
static const char TRIGGERS_SQL[] =
    "SELECT coalesce(string_agg(DISTINCT t.tgname, ', '), '') FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid"
    " WHERE t.tgrelid = format('%I.%I', $1::text, $2::text)::regclass AND NOT t.tgisinternal"
    "   AND t.tgname LIKE 'pgtandem\\_%' AND strpos(p.prosrc, '\"' || replace($3, '\"', '\"\"') || '\"') > 0";

/* One text answer of sql ($1, $2: the table; $3: the column), or NULL
 * with err set. */
static char *ask(PGconn *conn, const char *sql, const struct mig_cat_table *t, const char *col, char *err,
                 size_t errlen)
{
    const char *params[3] = {t->schema, t->name, col};
    PGresult *r = PQexecParams(conn, sql, 3, NULL, params, NULL, NULL, 0);
    char *v = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 ? strdup(PQgetvalue(r, 0, 0)) : NULL;
    if (!v)
        snprintf(err, errlen, "reading what reads column \"%s\" of %s.%s: %s", col, t->schema, t->name,
                 PQresultStatus(r) == PGRES_TUPLES_OK ? "out of memory" : PQerrorMessage(conn));
    PQclear(r);
    return v;
}

int mig_catalog_reads_column(const struct mig_cat_table *t, const char *name)
{
    for (size_t i = 0; t && name && i < t->nshape_reads; i++)
        if (!strcmp(t->shape_reads[i], name) || !strcmp(t->shape_reads[i], "*"))
            return 1;
    return 0;
}

/* *name, when it is `from`, becomes `to`. */
static int rename_one(char **name, const char *from, const char *to)
{
    if (strcmp(*name, from) != 0)
        return 0;
    char *copy = strdup(to);
    if (!copy)
        return -1;
    free(*name);
    *name = copy;
    return 0;
}

static int rename_in_catalog(struct mig_cat_table *t, const struct mig_cat_forward *rn)
{
    struct mig_cat_forward *grown = realloc(t->forward, (t->nforward + 1) * sizeof *grown);
    if (!grown)
        return -1;
    t->forward = grown;
    if (forward_copy(&t->forward[t->nforward], rn->from, rn->to, rn->by) != 0)
        return -1;
    t->nforward++;
    int rc = 0;
    for (size_t i = 0; i < t->ncols; i++)
        rc |= rename_one(&t->cols[i].name, rn->from, rn->to);
    for (size_t i = 0; i < t->nshape; i++)
        rc |= rename_one(&t->shape[i].phys, rn->from, rn->to);
    return rc;
}

struct bringing {
    PGconn *conn;
    struct mig_cat_table *t;
    const struct renames *rs;
    int failed;
    char *err;
    size_t errlen;
};

__attribute__((format(printf, 2, 3)))
static void refuse_forward(struct mig_cat_table *t, const char *fmt, ...)
{
    if (t->not_forward)
        return; /* the first reason */
    char why[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    t->not_forward = strdup(why);
}

/* A column the migration names: when the shape shows it under a plain
 * rename's new name, that rename is brought forward if nothing else
 * reads the column by its name until it. */
static void bring(const char *name, int changes, void *arg)
{
    (void)changes;
    struct bringing *b = arg;
    struct mig_cat_table *t = b->t;
    if (b->failed || !strcmp(name, "*") || mig_catalog_forward_from(t, name))
        return;
    const struct mig_cat_forward *rn = NULL;
    for (size_t i = 0; i < b->rs->n && !rn; i++)
        if (b->rs->v[i].t == t && !strcmp(b->rs->v[i].r.to, name) && mig_catalog_column(t, b->rs->v[i].r.from))
            rn = &b->rs->v[i].r;
    if (!rn)
        return;
    if (mig_catalog_reads_column(t, rn->from)) {
        refuse_forward(t, "a trigger or backfill of a migration in flight below reads \"%s\" by that name until"
                       " %s completes", rn->from, rn->by);
        return;
    }
    char *triggers = ask(b->conn, TRIGGERS_SQL, t, rn->from, b->err, b->errlen);
    char *deps = triggers && !triggers[0] ? ask(b->conn, DEPENDENTS_SQL, t, rn->from, b->err, b->errlen) : NULL;
    if (!triggers || (!triggers[0] && !deps)) {
        b->failed = 1;
    } else if (triggers[0]) {
        refuse_forward(t, "a trigger of the migrations in flight below (%s) reads \"%s\" by that name until %s"
                       " completes", triggers, rn->from, rn->by);
    } else if (deps[0]) {
        refuse_forward(t, "%s reads column \"%s\" (renamed to \"%s\" only at the complete of the migration"
                       " below)", deps, rn->from, rn->to);
    } else if (rename_in_catalog(t, rn) != 0) {
        snprintf(b->err, b->errlen, "out of memory");
        b->failed = 1;
    }
    free(triggers);
    free(deps);
}

static int bring_forward(PGconn *conn, const struct migration *m, struct mig_catalog *cat, const struct renames *rs,
                         char *err, size_t errlen)
{
    for (size_t i = 0; i < m->nops && rs->n; i++) {
        const struct mig_op *op = &m->ops[i];
        struct mig_cat_table *t = op->table ? (struct mig_cat_table *)mig_catalog_table(cat, op->schema, op->table)
                                            : NULL;
        if (!t || !t->shape_of || !mig_op_kind_on_columns(op->kind))
            continue;
        struct bringing b = {conn, t, rs, 0, err, errlen};
        mig_op_columns(op, bring, &b);
        if (b.failed)
            return -1;
    }
    return 0;
}

const char *mig_catalog_forward_from(const struct mig_cat_table *t, const char *name)
{
    for (size_t i = 0; t && name && i < t->nforward; i++)
        if (!strcmp(t->forward[i].to, name))
            return t->forward[i].from;
    return NULL;
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
    struct renames rs = {0};
    if (rc == 0)
        rc = load_reads(cat, line, &rs, err, errlen);
    if (rc == 0)
        rc = bring_forward(conn, m, cat, &rs, err, errlen);
    free_renames(&rs);
    PQclear(line);
    return rc;
}

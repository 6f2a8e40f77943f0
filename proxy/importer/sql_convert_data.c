/* A data migration's UPDATE or DELETE of a table the file does not create,
 * in batches: `UPDATE t SET a = e1, b = e2 [WHERE cond]` becomes one
 * update_rows per column (engine/ops/op_update_rows.c), `DELETE FROM t [WHERE
 * cond]` one delete_rows (engine/ops/op_delete_rows.c), run by the backfill after
 * expand, throttled, resumable and under the latency budget, instead of
 * one statement inside the expand's transaction that locks every row it
 * touches (with the table's ACCESS EXCLUSIVE held since an ALTER before it)
 * until it ends. Without a WHERE too: batches make every row safe to
 * write.
 *
 * A table's UPDATEs and DELETEs run in batches only when all of the file's
 * can, so they keep the file's order: else they all run as written, at
 * expand, as before. They cannot when one joins (FROM, USING), returns
 * rows, has a WITH, names the table by an alias or ONLY, sets a field or
 * subscript of a column or a column another sets too, when the file both
 * updates and deletes, or alters or renames the table (the batches would
 * write under the tandem triggers of a shape they were not written for;
 * the plan refuses that anyway).
 *
 * Batches move a statement past every later one that runs at expand, so
 * they are allowed only where that move changes nothing: no later
 * statement writes a table it reads (its own included: an INSERT ...
 * SELECT after a batched DELETE would otherwise meet the DELETE after it
 * wrote), none reads the rows it writes, and it does not read its own
 * table in a subquery (each batch would see the ones before it). */
#include "migration_sql.h"
#include "sql_convert.h"
#include "sql_convert_conv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The file changes rel's columns with an operation before this statement
 * (on the table by any name it had: rel is its name now). */
static int columns_changed(struct conv *c, json_t *rel)
{
    static const char *const changing[] = {"rename_column", "alter_column", "drop_column", "add_column",
                                           "rename_table", "drop_table", NULL};
    size_t i;
    json_t *op, *body;
    const char *kind;
    json_array_foreach(c->ops, i, op) {
        if (!sqlc_op_on_now(c, i, op, rel, &kind, &body))
            continue;
        for (int k = 0; changing[k]; k++)
            if (!strcmp(kind, changing[k]))
                return 1;
    }
    return 0;
}

/* The file does anything to rel before this statement (a delete and any
 * other change of the table cannot share its batches). */
static int table_touched(struct conv *c, json_t *rel)
{
    size_t i;
    json_t *op, *body;
    const char *kind;
    json_array_foreach(c->ops, i, op) {
        if (sqlc_op_on_now(c, i, op, rel, &kind, &body) && strcmp(kind, "sql"))
            return 1;
    }
    return 0;
}

/* One UPDATE's SET list is plain columns, none set before (`seen`). */
static int plain_targets(json_t *targets, json_t *seen)
{
    size_t k;
    json_t *t;
    json_array_foreach(targets, k, t) {
        json_t *rt = json_object_get(t, "ResTarget");
        const char *col = sqlc_str_or(rt, "name", NULL);
        if (!col || json_object_get(rt, "indirection") ||
            json_object_get(json_object_get(rt, "val"), "MultiAssignRef") || json_object_get(seen, col))
            return 0;
        json_object_set_new(seen, col, json_true());
    }
    return 1;
}

void sqlc_collect_rangevars(json_t *tree, json_t *out)
{
    const char *key;
    size_t i;
    json_t *v;
    if (json_is_object(tree)) {
        json_object_foreach(tree, key, v) {
            if (!strcmp(key, "RangeVar"))
                json_array_append(out, v);
            sqlc_collect_rangevars(v, out);
        }
    } else if (json_is_array(tree)) {
        json_array_foreach(tree, i, v) {
            sqlc_collect_rangevars(v, out);
        }
    }
}

/* The tables st's parse tree names in RangeVars (its target, a RangeVar's
 * fields under "relation", is not one of them), collected once per file:
 * each UPDATE and DELETE is checked against every later statement. NULL
 * when out of memory. */
static json_t *rangevars_of(struct conv *c, const struct sql_stmt *st)
{
    size_t at = (size_t)(st - c->s.stmts);
    if (!c->rangevars) {
        c->rangevars = json_array();
        for (size_t i = 0; c->rangevars && i < c->s.nstmts; i++)
            json_array_append_new(c->rangevars, json_null());
    }
    json_t *got = json_array_get(c->rangevars, at);
    if (json_is_null(got)) {
        got = json_array();
        if (!got || json_array_set_new(c->rangevars, at, got) != 0)
            return NULL;
        sqlc_collect_rangevars(st->body, got);
    }
    return got;
}

/* Whether a list of RangeVars holds schema.name (a CTE of that name counts
 * too: taking it for the table only costs the batches). */
static int holds(json_t *rangevars, const char *schema, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(rangevars, i, v) {
        if (!strcmp(sqlc_str_or(v, "relname", ""), name) && !strcmp(sqlc_rel_schema(v), schema))
            return 1;
    }
    return 0;
}

/* Whether st names schema.name: as its target or anywhere in its tree
 * (true when its tables are unknown: out of memory). */
static int names_table(struct conv *c, const struct sql_stmt *st, const char *schema, const char *name)
{
    json_t *target = json_object_get(st->body, "relation");
    json_t *rvs = rangevars_of(c, st);
    return (target && !strcmp(sqlc_str_or(target, "relname", ""), name) &&
            !strcmp(sqlc_rel_schema(target), schema)) || !rvs || holds(rvs, schema, name);
}

/* Whether t writes, alters, renames or drops a table that picks says
 * yes to: its target (INSERT, UPDATE, DELETE, ALTER, a rename), a table
 * of TRUNCATE's list or of a DROP TABLE. */
static int writes_table(const struct sql_stmt *t, int (*picks)(const void *arg, const char *schema, const char *name),
                        const void *arg)
{
    static const char *const writing[] = {"InsertStmt", "UpdateStmt", "DeleteStmt", "AlterTableStmt",
                                          "RenameStmt", NULL};
    json_t *target = json_object_get(t->body, "relation");
    for (int k = 0; writing[k] && target; k++)
        if (!strcmp(t->kind, writing[k]) && picks(arg, sqlc_rel_schema(target), sqlc_str_or(target, "relname", "")))
            return 1;
    size_t i;
    json_t *v;
    if (!strcmp(t->kind, "TruncateStmt")) {
        json_array_foreach(json_object_get(t->body, "relations"), i, v) {
            json_t *rv = json_object_get(v, "RangeVar");
            if (picks(arg, sqlc_rel_schema(rv), sqlc_str_or(rv, "relname", "")))
                return 1;
        }
    }
    if (!strcmp(t->kind, "DropStmt") && !strcmp(sqlc_str_or(t->body, "removeType", ""), "OBJECT_TABLE")) {
        json_array_foreach(json_object_get(t->body, "objects"), i, v) {
            json_t *items = sql_get(v, "List.items");
            size_t n = json_array_size(items);
            const char *name = n ? sql_node_str(json_array_get(items, n - 1)) : NULL;
            const char *schema = n > 1 ? sql_node_str(json_array_get(items, n - 2)) : "public";
            if (picks(arg, schema ? schema : "", name ? name : ""))
                return 1;
        }
    }
    return 0;
}

struct stmt_of {
    struct conv *c;
    const struct sql_stmt *st;
};

static int named_by(const void *arg, const char *schema, const char *name)
{
    const struct stmt_of *o = arg;
    return names_table(o->c, o->st, schema, name);
}

/* Whether o (its own table included) names a table that t writes. */
static int writes_what_it_reads(struct conv *c, const struct sql_stmt *t, const struct sql_stmt *o)
{
    struct stmt_of arg = {c, o};
    return writes_table(t, named_by, &arg);
}

static int held_in(const void *arg, const char *schema, const char *name)
{
    return holds((json_t *)arg, schema, name);
}

int sqlc_writes_one_of(const struct sql_stmt *t, json_t *tables)
{
    return writes_table(t, held_in, tables);
}

/* What names a table without seeing its rows: a view, a trigger, a
 * comment, a grant, a plain index. */
static int rowless(const struct sql_stmt *t)
{
    static const char *const kinds[] = {"ViewStmt", "CreateTrigStmt", "CommentStmt", "GrantStmt",
                                        "CreatePolicyStmt", NULL};
    for (int k = 0; kinds[k]; k++)
        if (!strcmp(t->kind, kinds[k]))
            return 1;
    return !strcmp(t->kind, "IndexStmt") && !sqlc_is_true(t->body, "unique");
}

/* Whether the UPDATE or DELETE o of rel keeps its outcome when batches
 * move it after every later statement that runs at expand (the rule at
 * the top). Later UPDATEs and DELETEs of rel batch with it, in order. */
static int moves_unchanged(struct conv *c, const struct sql_stmt *o, json_t *rel)
{
    const char *schema = sqlc_rel_schema(rel), *name = sqlc_str_or(rel, "relname", "");
    json_t *own = rangevars_of(c, o);
    if (!own || holds(own, schema, name))   /* a subquery over its own table */
        return 0;
    for (const struct sql_stmt *t = o + 1; t < c->s.stmts + c->s.nstmts; t++) {
        json_t *trel = json_object_get(t->body, "relation");
        if ((!strcmp(t->kind, "UpdateStmt") || !strcmp(t->kind, "DeleteStmt")) && trel &&
            sqlc_same_relation(trel, rel))
            continue;
        if (writes_what_it_reads(c, t, o) || (!rowless(t) && names_table(c, t, schema, name)))
            return 0;
    }
    return 1;
}

/* Every statement of the file on rel lets its UPDATEs and DELETEs run in
 * batches (the rule at the top). */
static int file_allows_batches(struct conv *c, json_t *rel)
{
    json_t *seen = json_object();
    int updates = 0, deletes = 0, ok = seen != NULL;
    for (size_t i = 0; ok && i < c->s.nstmts; i++) {
        const struct sql_stmt *o = &c->s.stmts[i];
        json_t *orel = json_object_get(o->body, "relation");
        if (!orel || !sqlc_same_relation(orel, rel))
            continue;
        if (!strcmp(o->kind, "AlterTableStmt") || !strcmp(o->kind, "RenameStmt")) {
            ok = 0;
            continue;
        }
        int upd = !strcmp(o->kind, "UpdateStmt"), del = !strcmp(o->kind, "DeleteStmt");
        if (!upd && !del)
            continue;
        updates += upd;
        deletes += del;
        ok = !json_object_get(orel, "alias") && !json_is_false(json_object_get(orel, "inh")) &&
             !json_object_get(o->body, "fromClause") && !json_object_get(o->body, "usingClause") &&
             !json_object_get(o->body, "returningList") && !json_object_get(o->body, "withClause") &&
             !(updates && deletes) && deletes <= 1 && plain_targets(json_object_get(o->body, "targetList"), seen) &&
             moves_unchanged(c, o, rel);
    }
    json_decref(seen);
    return ok;
}

/* The statement's WHERE as its text in *cond (NULL without one): 0, or -1
 * when no span of the text says it (the statement keeps its own rules). */
static int where_text(struct conv *c, const struct sql_stmt *st, char **cond)
{
    json_t *where = json_object_get(st->body, "whereClause");
    *cond = where ? sql_expr_text(&c->s, st, where) : NULL;
    return where && !*cond ? -1 : 0;
}

int sqlc_update_rows(struct conv *c, const struct sql_stmt *st)
{
    json_t *targets = json_object_get(st->body, "targetList");
    json_t *rel = json_object_get(st->body, "relation");
    char *cond;
    if (strcmp(st->kind, "UpdateStmt") || !json_array_size(targets) || columns_changed(c, rel) ||
        !file_allows_batches(c, rel) || where_text(c, st, &cond) != 0)
        return 0;
    if (sqlc_close_last(c) != 0) {
        free(cond);
        return -1;
    }
    int rc = 1;
    size_t i;
    json_t *t;
    json_array_foreach(targets, i, t) {
        json_t *rt = json_object_get(t, "ResTarget");
        char *expr = sql_expr_text(&c->s, st, json_object_get(rt, "val"));
        json_t *body = expr ? json_object() : NULL;
        if (!body) {
            free(expr);
            rc = sqlc_fail(c, st, "cannot read the value set to \"%s\"", sqlc_str_or(rt, "name", "?"));
            break;
        }
        sqlc_set_relation(body, rel, "table");
        json_object_set_new(body, "column", json_string(sqlc_str_or(rt, "name", "")));
        json_object_set_new(body, "up", json_string(expr));
        if (cond)
            json_object_set_new(body, "where", json_string(cond));
        free(expr);
        if (sqlc_add_op(c, "update_rows", body) != 0) {
            rc = sqlc_oom(c, st);
            break;
        }
    }
    free(cond);
    return rc;
}

int sqlc_delete_rows(struct conv *c, const struct sql_stmt *st)
{
    json_t *rel = json_object_get(st->body, "relation");
    char *cond;
    if (strcmp(st->kind, "DeleteStmt") || table_touched(c, rel) || !file_allows_batches(c, rel) ||
        where_text(c, st, &cond) != 0)
        return 0;
    if (sqlc_close_last(c) != 0) {
        free(cond);
        return -1;
    }
    json_t *body = json_object();
    sqlc_set_relation(body, rel, "table");
    if (cond)
        json_object_set_new(body, "where", json_string(cond));
    free(cond);
    return sqlc_add_op(c, "delete_rows", body) == 0 ? 1 : sqlc_oom(c, st);
}

/* The rows of the backfill's first batch (engine/migration.c). */
#define ONE_BATCH_ROWS 1000

int sqlc_fits_one_batch(struct conv *c, json_t *rel)
{
    const struct sqlc_options *o = c->opt;
    if (!o || !o->catalog_bool || o->types_stand_in)
        return 0;
    char table[SQLC_NAME_LEN], none[SQLC_NAME_LEN] = "";
    sqlc_copy_name(table, sqlc_str_or(rel, "relname", ""));
    sqlc_names_before_file(c, sqlc_rel_schema(rel), table, none);
    struct mig_str s = {0};
    mig_str_addf(&s, "SELECT count(*) <= %d FROM (SELECT 1 FROM ", ONE_BATCH_ROWS);
    mig_str_qname(&s, sqlc_rel_schema(rel), table);
    mig_str_addf(&s, " LIMIT %d) AS r", ONE_BATCH_ROWS + 1);
    char *sql = mig_str_take(&s);
    int fits = 0;
    char why[256];
    if (!sql || o->catalog_bool(o->column_type_arg, sql, &fits, why, sizeof why) != 0)
        fits = 0;
    free(sql);
    return fits;
}

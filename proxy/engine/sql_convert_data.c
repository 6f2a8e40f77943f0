/* A data migration's UPDATE or DELETE of a table the file does not create,
 * in batches: `UPDATE t SET a = e1, b = e2 [WHERE cond]` becomes one
 * update_rows per column (ops/op_update_rows.c), run by the backfill
 * after expand, throttled, resumable and under the latency budget, instead
 * of one statement inside the expand's transaction that locks every row it
 * touches (with the table's ACCESS EXCLUSIVE held since an ALTER before it)
 * until it ends; `DELETE FROM t [WHERE cond]` one delete_rows
 * (ops/op_delete_rows.c). Without a WHERE too: batches make every row safe
 * to write. Left to the statement's own rules: an UPDATE that joins (FROM),
 * returns rows, has a WITH, sets a field or subscript of a column or one
 * an earlier UPDATE of the file sets (a batch sets a column once), or
 * writes a table whose columns the file changes (the batches would write
 * under the tandem triggers of a shape the statement was not written for;
 * that is refused by the plan anyway); a DELETE with USING, RETURNING or
 * WITH, or of a table anything else of the file changes. */
#include "sql_convert.h"
#include "sql_convert_conv.h"

#include <stdlib.h>
#include <string.h>

/* An update_rows of this script already sets rel's column: a batch sets a
 * column once. */
static int column_updated(struct conv *c, json_t *rel, const char *column)
{
    size_t i;
    json_t *op;
    json_array_foreach(c->ops, i, op) {
        json_t *body = json_object_get(op, "update_rows");
        if (body && !strcmp(sqlc_str_or(body, "schema", "public"), sqlc_rel_schema(rel)) &&
            !strcmp(sqlc_str_or(body, "table", ""), sqlc_str_or(rel, "relname", "")) &&
            !strcmp(sqlc_str_or(body, "column", ""), column))
            return 1;
    }
    return 0;
}

/* The file changes rel's columns with an operation before this statement. */
static int columns_changed(struct conv *c, json_t *rel)
{
    static const char *const changing[] = {"rename_column", "alter_column", "drop_column", "add_column",
                                           "rename_table", "drop_table", NULL};
    size_t i;
    json_t *op;
    json_array_foreach(c->ops, i, op) {
        for (int k = 0; changing[k]; k++) {
            json_t *body = json_object_get(op, changing[k]);
            const char *table = sqlc_str_or(body, strcmp(changing[k], "rename_table") ? "table" : "from", "");
            if (body && !strcmp(sqlc_str_or(body, "schema", "public"), sqlc_rel_schema(rel)) &&
                !strcmp(table, sqlc_str_or(rel, "relname", "")))
                return 1;
        }
    }
    return 0;
}

/* A statement of the file alters or renames rel (the plan would refuse
 * the batches beside it), or the statement names rel by an alias
 * its expressions use (the batches name the table their own way): such a
 * statement keeps its own rules. */
static int not_batchable(struct conv *c, const struct sql_stmt *st, json_t *rel)
{
    if (json_object_get(rel, "alias"))
        return 1;
    const char *name = sqlc_str_or(rel, "relname", "");
    for (size_t i = 0; i < c->s.nstmts; i++) {
        const struct sql_stmt *o = &c->s.stmts[i];
        if (o == st || (strcmp(o->kind, "AlterTableStmt") && strcmp(o->kind, "RenameStmt")))
            continue;
        json_t *orel = json_object_get(o->body, "relation");
        if (!strcmp(sqlc_str_or(orel, "relname", ""), name) && !strcmp(sqlc_rel_schema(orel), sqlc_rel_schema(rel)))
            return 1;
    }
    return 0;
}

/* Every UPDATE and DELETE the file writes to rel can run in batches (one
 * kind only, no column set twice, no alias, join, RETURNING or WITH):
 * else they all run as written, in the file's order, as before. */
static int all_batchable(struct conv *c, json_t *rel)
{
    const char *name = sqlc_str_or(rel, "relname", "");
    json_t *seen = json_object();
    int updates = 0, deletes = 0, ok = seen != NULL;
    for (size_t i = 0; ok && i < c->s.nstmts; i++) {
        const struct sql_stmt *o = &c->s.stmts[i];
        int upd = !strcmp(o->kind, "UpdateStmt"), del = !strcmp(o->kind, "DeleteStmt");
        json_t *orel = json_object_get(o->body, "relation");
        if ((!upd && !del) || strcmp(sqlc_str_or(orel, "relname", ""), name) ||
            strcmp(sqlc_rel_schema(orel), sqlc_rel_schema(rel)))
            continue;
        updates += upd;
        deletes += del;
        if (json_object_get(orel, "alias") || json_object_get(o->body, "fromClause") ||
            json_object_get(o->body, "usingClause") || json_object_get(o->body, "returningList") ||
            json_object_get(o->body, "withClause") || (updates && deletes) || deletes > 1)
            ok = 0;
        size_t k;
        json_t *t;
        json_array_foreach(json_object_get(o->body, "targetList"), k, t) {
            const char *col = sqlc_str_or(json_object_get(t, "ResTarget"), "name", "");
            if (json_object_get(seen, col))
                ok = 0;
            json_object_set_new(seen, col, json_true());
        }
    }
    json_decref(seen);
    return ok;
}

int sqlc_update_rows(struct conv *c, const struct sql_stmt *st)
{
    json_t *b = st->body;
    json_t *targets = json_object_get(b, "targetList");
    json_t *rel = json_object_get(b, "relation");
    if (strcmp(st->kind, "UpdateStmt") || json_object_get(b, "fromClause") || json_object_get(b, "returningList") ||
        json_object_get(b, "withClause") || !json_array_size(targets) || columns_changed(c, rel) ||
        json_is_false(json_object_get(rel, "inh")) || not_batchable(c, st, rel) || !all_batchable(c, rel))
        return 0;
    size_t i;
    json_t *t;
    json_array_foreach(targets, i, t) {
        json_t *rt = json_object_get(t, "ResTarget");
        if (!json_object_get(rt, "name") || json_object_get(rt, "indirection") ||
            json_object_get(json_object_get(rt, "val"), "MultiAssignRef") ||
            column_updated(c, rel, sqlc_str_or(rt, "name", "")))
            return 0;
    }
    json_t *where = json_object_get(b, "whereClause");
    char *cond = where ? sql_expr_text(&c->s, st, where) : NULL;
    if (where && !cond)
        return 0; /* no span of the text says it: left to the statement's own rules */
    if (sqlc_close_last(c) != 0) {
        free(cond);
        return -1;
    }
    int rc = 1;
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

/* The file does anything to rel before this statement (a delete and any
 * other change of the table cannot share its batches). */
static int table_touched(struct conv *c, json_t *rel)
{
    size_t i;
    json_t *op;
    json_array_foreach(c->ops, i, op) {
        void *it = json_object_iter(op);
        json_t *body = it ? json_object_iter_value(it) : NULL;
        const char *kind = it ? json_object_iter_key(it) : "";
        const char *table = sqlc_str_or(body, strcmp(kind, "rename_table") ? "table" : "from", "");
        if (body && strcmp(kind, "sql") && !strcmp(sqlc_str_or(body, "schema", "public"), sqlc_rel_schema(rel)) &&
            !strcmp(table, sqlc_str_or(rel, "relname", "")))
            return 1;
    }
    return 0;
}

int sqlc_delete_rows(struct conv *c, const struct sql_stmt *st)
{
    json_t *b = st->body;
    json_t *rel = json_object_get(b, "relation");
    if (strcmp(st->kind, "DeleteStmt") || json_object_get(b, "usingClause") || json_object_get(b, "returningList") ||
        json_object_get(b, "withClause") || json_is_false(json_object_get(rel, "inh")) || table_touched(c, rel) ||
        not_batchable(c, st, rel) || !all_batchable(c, rel))
        return 0;
    json_t *where = json_object_get(b, "whereClause");
    char *cond = where ? sql_expr_text(&c->s, st, where) : NULL;
    if (where && !cond)
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


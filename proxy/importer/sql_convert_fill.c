/* How ORMs give a table that has rows a required column, made online:
 *
 *   ALTER TABLE t ADD COLUMN c type;
 *   UPDATE t SET c = expr [WHERE c IS NULL | WHERE cond];
 *   ALTER TABLE t ALTER COLUMN c SET NOT NULL;
 *
 * Run as written, the UPDATE rewrites every row in one transaction inside
 * the expand (the app waits on the rows it locks), and the NOT NULL, in
 * force from expand on, fails every insert of the release that does not
 * know c. Folded into the add_column as its "up" and nullable false, the
 * backfill fills c in batches, the old release's writes get it from the
 * same expression through the trigger, and NOT NULL is validated before
 * the contract makes it the column's: what the offline DDL ends in.
 *
 * An UPDATE with a WHERE of its own fills only those rows: CASE WHEN cond
 * THEN expr END (the column is new, so NULL elsewhere, or its default),
 * and a later UPDATE of the same column wraps the earlier ones. An UPDATE that reads c
 * itself (but for WHERE c IS NULL), reads other tables with FROM, returns
 * rows, or reads what a later statement of the file changes (the backfill
 * runs after the whole expand: later_changes_read) is not folded, nor is
 * any UPDATE of c after one that was not: it is left to the statement's
 * own rules, and a NOT NULL after it is refused saying so. */
#include "sql_convert.h"
#include "sql_convert_conv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migration_sql.h"

/* The add_column body this script made for rel's column, or NULL. */
json_t *sqlc_added_column(struct conv *c, json_t *rel, const char *column)
{
    size_t i;
    json_t *op, *body;
    const char *kind;
    json_array_foreach(c->ops, i, op) {
        if (sqlc_op_on(op, rel, &kind, &body) && !strcmp(kind, "add_column") &&
            !strcmp(sqlc_str_or(json_object_get(body, "column"), "name", ""), column))
            return body;
    }
    return NULL;
}

/* The tree reads the updated table's column: a ColumnRef ending in its
 * name, unqualified (which, inside a subquery, may be another table's: read
 * as ours, to be safe) or qualified by the table's name or alias. A column
 * of the same name of another table, e."environmentId" in a correlated
 * subquery (drizzle-kit's fill from a table the file creates), is not. */
static int reads_column(json_t *node, const char *column, const char *table, const char *alias)
{
    if (json_is_array(node)) {
        size_t i;
        json_t *v;
        json_array_foreach(node, i, v)
            if (reads_column(v, column, table, alias))
                return 1;
        return 0;
    }
    if (!json_is_object(node))
        return 0;
    json_t *fields = sql_get(node, "ColumnRef.fields");
    if (fields) {
        size_t n = json_array_size(fields);
        const char *last = sql_node_str(json_array_get(fields, n - 1));
        if (!last || strcmp(last, column) != 0)
            return 0;
        const char *qual = n > 1 ? sql_node_str(json_array_get(fields, n - 2)) : NULL;
        return !qual || (table && !strcmp(qual, table)) || (alias && !strcmp(qual, alias));
    }
    const char *key;
    json_t *v;
    json_object_foreach(node, key, v)
        if (reads_column(v, column, table, alias))
            return 1;
    return 0;
}

/* WHERE c IS NULL: every row of a column just added, as the UPDATE sees it. */
static int is_null_test_of(json_t *where, const char *column)
{
    json_t *t = json_object_get(where, "NullTest");
    json_t *fields = sql_get(t, "arg.ColumnRef.fields");
    const char *last = sql_node_str(json_array_get(fields, json_array_size(fields) - 1));
    return t && !strcmp(sqlc_str_or(t, "nulltesttype", ""), "IS_NULL") && last && !strcmp(last, column);
}

/* The line of the first UPDATE of the column add adds that was not
 * folded, or 0. */
static int unfolded_line(const struct conv *c, json_t *add)
{
    size_t i;
    json_t *e;
    json_array_foreach(c->unfolded, i, e) {
        if (json_array_get(e, 0) == add)
            return (int)json_integer_value(json_array_get(e, 1));
    }
    return 0;
}

/* An UPDATE of a column this script adds that is not folded: remembered,
 * so a NOT NULL after it says why that UPDATE is no "up", and no later
 * UPDATE of the column is folded either (the backfill, after the whole
 * expand, would write over what this one wrote in its place). 0, or -1
 * out of memory. */
static int not_folded(struct conv *c, const struct sql_stmt *st, json_t *add)
{
    if (unfolded_line(c, add))
        return 0;
    if (!c->unfolded)
        c->unfolded = json_array();
    if (!c->unfolded || json_array_append_new(c->unfolded, json_pack("[Oi]", add, st->line)) != 0)
        return sqlc_oom(c, st);
    return 0;
}

/* What a fill reads, for later_changes_read. */
struct fill_reads {
    json_t *rel, *val, *where;
    const char *column, *table, *alias;
    json_t *read;       /* the RangeVars of its value and WHERE */
    json_t *others;     /* those of other tables */
    int own_sub;        /* a subquery reads its own table */
};

/* Whether t changes what the fill reads: writes, renames or drops a table
 * its subqueries read; inserts into its table; updates a column it reads;
 * or, when a subquery reads its own table, writes that table (but not an
 * ALTER of it: a key added on it). */
static int changes_read(const struct sql_stmt *t, const struct fill_reads *r)
{
    if (sqlc_writes_one_of(t, r->others))
        return 1;
    if (r->own_sub && !strcmp(t->kind, "TruncateStmt"))
        return sqlc_writes_one_of(t, r->read);
    json_t *trel = json_object_get(t->body, "relation");
    if (!trel || !sqlc_same_relation(trel, r->rel))
        return 0;
    if (!strcmp(t->kind, "InsertStmt") || (r->own_sub && !strcmp(t->kind, "DeleteStmt")))
        return 1;
    if (strcmp(t->kind, "UpdateStmt") != 0)
        return 0;
    if (r->own_sub)
        return 1;
    size_t i;
    json_t *tt;
    json_array_foreach(json_object_get(t->body, "targetList"), i, tt) {
        const char *set = sqlc_str_or(json_object_get(tt, "ResTarget"), "name", "");
        if (strcmp(set, r->column) != 0 &&
            (reads_column(r->val, set, r->table, r->alias) || reads_column(r->where, set, r->table, r->alias)))
            return 1;
    }
    return 0;
}

/* Whether a later statement changes what the fill reads. Folded, the fill
 * runs in the backfill after the whole expand, past every later statement
 * of the file, where offline it ran before them (90003-499: a table its
 * subquery reads, which the file makes, renamed later; an INSERT into its
 * table, whose new row the backfill would fill too). */
static int later_changes_read(struct conv *c, const struct sql_stmt *st, json_t *rel, json_t *val, json_t *where,
                              const char *column)
{
    struct fill_reads r = {rel, val, where, column, sqlc_str_or(rel, "relname", NULL),
                           sqlc_str_or(json_object_get(rel, "alias"), "aliasname", NULL), json_array(), json_array(), 0};
    int changes = !r.read || !r.others;
    if (!changes) {
        sqlc_collect_rangevars(val, r.read);
        sqlc_collect_rangevars(where, r.read);
        size_t i;
        json_t *rv;
        json_array_foreach(r.read, i, rv) {
            if (sqlc_same_relation(rv, rel))
                r.own_sub = 1;
            else
                json_array_append(r.others, rv);
        }
    }
    for (const struct sql_stmt *t = st + 1; !changes && t < c->s.stmts + c->s.nstmts; t++)
        changes = changes_read(t, &r);
    json_decref(r.read);
    json_decref(r.others);
    return changes;
}

int sqlc_fold_fill(struct conv *c, const struct sql_stmt *st)
{
    json_t *b = st->body;
    json_t *targets = json_object_get(b, "targetList");
    if (strcmp(st->kind, "UpdateStmt") || json_array_size(targets) != 1)
        return 0;
    json_t *rel = json_object_get(b, "relation");
    json_t *target = json_object_get(json_array_get(targets, 0), "ResTarget");
    const char *column = sqlc_str_or(target, "name", "");
    json_t *add = sqlc_added_column(c, rel, column);
    json_t *val = json_object_get(target, "val");
    json_t *where = json_object_get(b, "whereClause");
    if (add && (json_object_get(b, "fromClause") || json_object_get(b, "returningList") ||
                json_object_get(b, "withClause") || unfolded_line(c, add) ||
                later_changes_read(c, st, rel, val, where, column)))
        return not_folded(c, st, add);
    /* WHERE c IS NULL picks the rows the UPDATEs before it left NULL: no condition of its own */
    json_t *cond_node = where && !is_null_test_of(where, column) ? where : NULL;
    const char *table = sqlc_str_or(rel, "relname", NULL);
    const char *alias = sqlc_str_or(json_object_get(rel, "alias"), "aliasname", NULL);
    const char *dflt = add ? sqlc_str_or(json_object_get(add, "column"), "default", NULL) : NULL;
    if (!add || json_object_get(target, "indirection") || reads_column(val, column, table, alias) ||
        (cond_node && reads_column(cond_node, column, table, alias)))
        return 0;
    char *expr = sql_expr_text(&c->s, st, val);
    char *cond = cond_node ? sql_expr_text(&c->s, st, cond_node) : NULL;
    /* The up names the row by the table's name (the backfill's UPDATE and
     * the trigger's ALIAS FOR NEW): an UPDATE under an alias (rallly:
     * UPDATE polls p ... p.status; atlas: UPDATE "runs_table" AS "runs")
     * has its alias written as the table's name, or is left to its own
     * rules when a subquery inside takes the alias for another table. */
    if (alias && table) {
        char *e2 = expr ? sql_expr_requalify(expr, alias, table) : NULL;
        char *c2 = cond ? sql_expr_requalify(cond, alias, table) : NULL;
        free(expr);
        free(cond);
        expr = e2;
        cond = c2;
    }
    if (!expr || (cond_node && !cond)) {
        free(expr);
        free(cond);
        return 0; /* no span of the text says it: left to the statement's own rules */
    }
    /* A column added with a default holds it in every row the UPDATE sees
     * (drizzle-kit: ADD COLUMN c boolean DEFAULT false NOT NULL; UPDATE t
     * SET c = true): the rows it leaves keep the default, which stays the
     * new release's for its inserts. */
    const char *before = sqlc_str_or(add, "up", NULL);
    if (!before)
        before = dflt;
    struct mig_str up_text = {0};
    if (!where || (!cond && !before)) /* every row */
        mig_str_add(&up_text, expr);
    else if (!cond)
        mig_str_addf(&up_text, "COALESCE((%s), (%s))", before, expr);
    else
        mig_str_addf(&up_text, "CASE WHEN (%s) THEN (%s) ELSE %s END", cond, expr, before ? before : "NULL");
    char *up = mig_str_take(&up_text);
    free(expr);
    free(cond);
    if (!up || json_object_set_new(add, "up", json_string(up)) != 0) {
        free(up);
        return sqlc_oom(c, st);
    }
    free(up);
    return 1;
}

int sqlc_fold_not_null(struct conv *c, const struct sql_stmt *st, json_t *rel, const char *column)
{
    json_t *add = sqlc_added_column(c, rel, column);
    if (!add)
        return 0;
    json_t *col = json_object_get(add, "column");
    if (json_object_get(add, "up") || json_object_get(col, "default"))
        return json_object_set_new(col, "nullable", json_false()) == 0 ? 1 : sqlc_oom(c, st);
    int unfolded_at = unfolded_line(c, add);
    if (unfolded_at)
        return sqlc_fail(c, st, "SET NOT NULL on \"%s\", added above: the UPDATE at line %d reads other rows (FROM, "
                         "WITH or RETURNING) or what a later statement changes, so no per-row \"up\" gives its value to the inserts of the release "
                         "that does not know the column, and they would break on the NOT NULL; keep the column "
                         "nullable here and SET NOT NULL in a later migration, once the old release is retired (or "
                         "give it a DEFAULT)", column, unfolded_at);
    return sqlc_fail(c, st, "SET NOT NULL on \"%s\", added above without a value for the rows already there "
                     "or for the inserts of the release that does not know it: fill it first (UPDATE \"%s\" "
                     "SET \"%s\" = <expression> between the two statements, which becomes the column's \"up\"), "
                     "or give it a DEFAULT", column, sqlc_str_or(rel, "relname", "?"), column);
}

/* A data statement (INSERT, UPDATE, DELETE) after a change of its table
 * that the table itself takes only at the contract: until then the table
 * keeps what the old release relies on, and only the new shape (its view,
 * its second column) has the change. A change of a column's type (the old
 * release writes the old type, the new values go to a second column), a
 * column dropped (its NOT NULL and default still hold for what is
 * written), NOT NULL dropped, a default set or dropped (the table keeps the
 * old release's default): run at expand, the statement would meet the
 * table as the file found it, not as the statements above it left it, and
 * end elsewhere than offline (the old default in the rows an INSERT
 * writes, a NULL refused, 'text' into a bigint after DDL had run).
 *
 * One rule for all of them: the statement runs at complete, in the
 * contract after the changes above it were made to the table, where it
 * sees the file's state as Postgres would (and every row the old release
 * wrote in between, as offline it would see them before). Only what the
 * statement's outcome depends on counts: beside a NOT NULL dropped, a
 * statement that cannot write NULL into that column (an UPDATE of other
 * columns, a DELETE) sees the same rows at expand as offline, and keeps
 * its place before what the file builds on those rows. Once one data
 * statement of a table waits, the ones after it on that table wait too,
 * so they still run in the file's order. A later
 * statement of the file that checks the table's rows before the contract
 * (a constraint, NOT NULL, a unique index) would then meet them before the
 * statement wrote them: the file is refused before anything runs, naming
 * the statement, the change it waits for and what to write instead. */
#include "sql_convert.h"
#include "sql_convert_conv.h"

#include <stdio.h>
#include <string.h>

/* A DEFAULT anywhere in the statement's tree (SET c = DEFAULT, VALUES
 * (DEFAULT, ...)). */
static int has_set_to_default(json_t *node)
{
    if (json_is_object(node)) {
        const char *key;
        json_t *v;
        json_object_foreach(node, key, v) {
            if (!strcmp(key, "SetToDefault") || has_set_to_default(v))
                return 1;
        }
    } else if (json_is_array(node)) {
        size_t i;
        json_t *v;
        json_array_foreach(node, i, v) {
            if (has_set_to_default(v))
                return 1;
        }
    }
    return 0;
}

/* Whether a list of ResTargets names column: an UPDATE's SET list
 * ("targetList", a (a, b) = (...) assignment too) or an INSERT's column
 * list ("cols"). */
static int names_column(const struct sql_stmt *st, const char *list, const char *column)
{
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(st->body, list), i, t) {
        if (!strcmp(sqlc_str_or(json_object_get(t, "ResTarget"), "name", ""), column))
            return 1;
    }
    return 0;
}

/* Whether the rows the statement writes depend on column's default: an
 * INSERT that leaves the column out (or has no column list: DEFAULT
 * VALUES, a DEFAULT among its values), or any DEFAULT it writes. */
static int writes_default(const struct sql_stmt *st, const char *column)
{
    if (has_set_to_default(st->body))
        return 1;
    return !strcmp(st->kind, "InsertStmt") && !names_column(st, "cols", column);
}

/* The first change an operation above makes to rel that the table takes
 * only at the contract and that this statement's outcome depends on,
 * described into what; 0 when there is none. */
static int change_before(struct conv *c, const struct sql_stmt *st, json_t *rel, char *what, size_t n)
{
    size_t i;
    json_t *op, *body;
    const char *kind;
    int insert = !strcmp(st->kind, "InsertStmt");
    json_array_foreach(c->ops, i, op) {
        if (!sqlc_op_on(op, rel, &kind, &body))
            continue;
        int alter = !strcmp(kind, "alter_column");
        const char *col = sqlc_str_or(body, alter || !strcmp(kind, "drop_column") ? "column" : "to", "?");
        if ((alter || !strcmp(kind, "rename_column")) && json_object_get(body, "type")) {
            snprintf(what, n, "the type of \"%s\" changes above (the column keeps its old type for the old "
                     "release until then)", col);
            return 1;
        }
        if (!alter && !(insert && !strcmp(kind, "drop_column")))
            continue;
        if (!alter) {
            snprintf(what, n, "\"%s\" is dropped above (its NOT NULL and default hold for the rows written "
                     "until then)", col);
            return 1;
        }
        if (json_is_true(json_object_get(body, "nullable")) &&
            (insert || (!strcmp(st->kind, "UpdateStmt") && names_column(st, "targetList", col)))) {
            snprintf(what, n, "NOT NULL of \"%s\" is dropped above (the old release may rely on it until "
                     "then) and this statement may write NULL into it", col);
            return 1;
        }
        if (json_object_get(body, "default") && writes_default(st, col)) {
            snprintf(what, n, "the default of \"%s\" changes above (the table keeps the old release's until "
                     "then) and this statement writes it", col);
            return 1;
        }
    }
    return 0;
}

/* A later statement of the file on the table that checks the rows there
 * before the contract (a constraint validated, NOT NULL, a unique index, a
 * type's backfill): it would meet them before this statement, run at
 * complete, wrote them. A plain index is kept up by the writes whenever
 * they come; another data statement waits the same way. */
static int builds_on_rows(const struct sql_stmt *o)
{
    if (!strcmp(o->kind, "UpdateStmt") || !strcmp(o->kind, "DeleteStmt") || !strcmp(o->kind, "InsertStmt"))
        return 0;
    return strcmp(o->kind, "IndexStmt") || sqlc_is_true(o->body, "unique");
}

/* Whether a data statement of rel above runs at complete. */
static int waits_on(const struct conv *c, json_t *rel)
{
    for (size_t i = 0; i < c->ndeferred_data; i++)
        if (!strcmp(c->deferred_data[i].schema, sqlc_rel_schema(rel)) &&
            !strcmp(c->deferred_data[i].table, sqlc_str_or(rel, "relname", "")))
            return 1;
    return 0;
}

static int remember_waits(struct conv *c, const struct sql_stmt *st, json_t *rel)
{
    if (waits_on(c, rel))
        return 0;
    if (c->ndeferred_data == sizeof c->deferred_data / sizeof c->deferred_data[0])
        return sqlc_fail(c, st, "data statements of too many tables run at complete in one file; split the file");
    sqlc_copy_name(c->deferred_data[c->ndeferred_data].schema, sqlc_rel_schema(rel));
    sqlc_copy_name(c->deferred_data[c->ndeferred_data].table, sqlc_str_or(rel, "relname", ""));
    c->ndeferred_data++;
    return 0;
}

int sqlc_dml_waits(struct conv *c, const struct sql_stmt *st, json_t *rel)
{
    char what[400];
    if (!change_before(c, st, rel, what, sizeof what)) {
        if (!waits_on(c, rel))
            return 0;
        snprintf(what, sizeof what, "a data statement above on it runs at complete, and this one keeps its place "
                 "after it");
    }
    for (const struct sql_stmt *o = st + 1; o < c->s.stmts + c->s.nstmts; o++) {
        json_t *orel = json_object_get(o->body, "relation");
        if (!orel || !sqlc_same_relation(orel, rel) || !builds_on_rows(o))
            continue;
        return sqlc_fail(c, st, "on \"%s\", %s: this statement runs at complete, in the contract, where it "
                         "sees the change as offline, which is after what a later statement of the file (line %d) "
                         "builds on the table; put the statement after those, or in a migration of its own "
                         "after this one", sqlc_str_or(rel, "relname", "?"), what, o->line);
    }
    if (remember_waits(c, st, rel) != 0)
        return -1;
    return sqlc_emit_sql(c, st, "complete", NULL) == 0 ? 1 : -1;
}

/* An index or constraint the file makes on a column that a later statement
 * of the file retypes (CREATE UNIQUE INDEX on "score", then ALTER COLUMN
 * "score" TYPE text). Offline the retype rebuilds it on the new type.
 * Online the retype's second column carries only what the catalog had at
 * start, so the plan refuses an object the migration itself made earlier;
 * made after the retype instead, it is built on the new column, and the
 * file ends where offline it ends.
 *
 * An index (but one with keys written as expressions), a CHECK, or a
 * unique, primary or foreign key moves: after the retype the plan builds
 * it over the second column (its columns, and the column references of a
 * CHECK or a predicate). The create moves to just after the retype only
 * where that changes
 * nothing Postgres would see: it is the one statement of the file that
 * names the object (nothing renames, validates, attaches or drops it), no
 * rename of the table or a column comes between, a unique one is no
 * arbiter of an INSERT ... ON CONFLICT of the table, and a foreign key's
 * actions meet no data statement of the file. A row that would break it
 * between breaks it offline too, where the file then never runs. */
#include "sql_convert.h"
#include "sql_convert_conv.h"

#include <string.h>

static int on_table(json_t *body, const char *schema, const char *table)
{
    return !strcmp(sqlc_str_or(body, "schema", "public"), schema) && !strcmp(sqlc_str_or(body, "table", ""), table);
}

/* A rename of the table, or of one of its columns: names shift there. */
static int renames(json_t *op, const char *schema, const char *table)
{
    json_t *body;
    const char *kind = sqlc_op_kind(op, &body);
    if (!strcmp(kind, "rename_table"))
        return !strcmp(sqlc_str_or(body, "schema", "public"), schema) &&
               (!strcmp(sqlc_str_or(body, "from", ""), table) || !strcmp(sqlc_str_or(body, "to", ""), table));
    return !strcmp(kind, "rename_column") && on_table(body, schema, table) &&
           strcmp(sqlc_str_or(body, "from", ""), sqlc_str_or(body, "to", "")) != 0;
}

/* The file writes rows somewhere (a foreign key's actions could meet them),
 * or, with table, inserts into it with ON CONFLICT (a unique index or
 * constraint may be its arbiter). */
static int file_has(const struct conv *c, const char *schema, const char *table)
{
    for (size_t i = 0; i < c->s.nstmts; i++) {
        const struct sql_stmt *st = &c->s.stmts[i];
        json_t *rel = json_object_get(st->body, "relation");
        if (!table && (!strcmp(st->kind, "InsertStmt") || !strcmp(st->kind, "UpdateStmt") ||
                       !strcmp(st->kind, "DeleteStmt") || !strcmp(st->kind, "MergeStmt")))
            return 1;
        if (table && !strcmp(st->kind, "InsertStmt") && json_object_get(st->body, "onConflictClause") && rel &&
            !strcmp(sqlc_rel_schema(rel), schema) && !strcmp(sqlc_str_or(rel, "relname", ""), table))
            return 1;
    }
    return 0;
}

/* Whether o, an operation before the retype of schema.table.column, makes
 * an index or constraint on that column that may move after it. */
static int movable(const struct conv *c, json_t *o, const char *schema, const char *table, const char *column)
{
    json_t *body;
    const char *kind = sqlc_op_kind(o, &body);
    int index = !strcmp(kind, "create_index");
    const char *type = sqlc_str_or(body, "type", "");
    /* keys written as expressions are refused beside a retype of their
     * table: they stay where they are */
    if ((!index && strcmp(kind, "create_constraint")) || !on_table(body, schema, table) ||
        json_object_get(body, "keys"))
        return 0;
    const char *name = sqlc_str_or(body, "name", "");
    const struct sql_stmt *end = c->s.stmts + c->s.nstmts;
    const struct sql_stmt *made = name[0] ? sqlc_stmt_naming(c->s.stmts, end, name, name) : NULL;
    if (!made || sqlc_stmt_naming(made + 1, end, name, name) || !sqlc_tree_names(made->body, column, 0))
        return 0;
    if (!strcmp(type, "foreign_key"))
        return !file_has(c, schema, NULL);
    int unique = index ? sqlc_is_true(body, "unique") : !strcmp(type, "unique") || !strcmp(type, "primary_key");
    return !unique || !file_has(c, schema, table);
}

/* The column whose type op changes (its name before a rename the same
 * operation makes), or NULL. */
static const char *retyped_column(json_t *op, json_t **body)
{
    const char *kind = sqlc_op_kind(op, body);
    int alter = !strcmp(kind, "alter_column");
    if ((!alter && strcmp(kind, "rename_column")) || !json_object_get(*body, "type") ||
        json_is_true(json_object_get(*body, "recreate")))
        return NULL;
    return sqlc_str_or(*body, alter ? "column" : "from", NULL);
}

int sqlc_build_after_retypes(struct conv *c)
{
    for (size_t i = 0; i < json_array_size(c->ops); i++) {
        json_t *body;
        const char *column = retyped_column(json_array_get(c->ops, i), &body);
        if (!column)
            continue;
        const char *schema = sqlc_str_or(body, "schema", "public"), *table = sqlc_str_or(body, "table", "");
        size_t from = i;
        while (from > 0 && !renames(json_array_get(c->ops, from - 1), schema, table))
            from--;
        /* each one moved goes after the retype and the ones moved before it,
         * in the file's order */
        size_t at = i, placed = 0;
        for (size_t j = from; j < at;) {
            json_t *o = json_array_get(c->ops, j);
            if (!movable(c, o, schema, table, column)) {
                j++;
                continue;
            }
            json_incref(o);
            if (json_array_remove(c->ops, j) != 0) {
                json_decref(o);
                return -1;
            }
            if (json_array_insert_new(c->ops, at + placed, o) != 0)
                return -1;
            at--;
            placed++;
        }
        i = at + placed;
    }
    return 0;
}

/* A column whose type the file changes twice (86348-13: `c TYPE text USING
 * c::text`, other tables' changes, then `c TYPE varchar(200)`): offline the
 * second change reads what the first one wrote, so the two are one change
 * from the old type to the last, its `up` the second's with the first's in
 * place of the column and its `down` the other way round. Online the plan
 * carries a changed column to one second column until the contract and has
 * no room for another; two alter_columns of one column are refused there.
 * Composed only where nothing can see the type between the two: no
 * statement between names the column, none but an ALTER TABLE of the table
 * names the table (a data statement or a view could read the value as the
 * first change left it), and both expressions read the column alone. */
#include "sql_convert.h"
#include "sql_convert_conv.h"

#include <stdlib.h>
#include <string.h>

#include "sql_fragment.h"

/* The statement above st that changed column's type last, when nothing
 * between (nor another command of it) can see the type it gave; NULL
 * otherwise. */
static const struct sql_stmt *retyped_unseen_above(struct conv *c, const struct sql_stmt *st, json_t *rel,
                                                   const char *column)
{
    const char *table = sqlc_str_or(rel, "relname", "");
    for (const struct sql_stmt *o = st; o-- > c->s.stmts;) {
        json_t *retype = sqlc_column_cmd(o, rel, "AT_AlterColumnType", column), *cmd;
        if (retype) {
            size_t i;
            json_array_foreach(json_object_get(o->body, "cmds"), i, cmd)
                if (cmd != retype && sqlc_tree_names(cmd, column, 0))
                    return NULL;
            return o;
        }
        if (sqlc_tree_names(o->body, column, 0))
            return NULL;
        json_t *orel = json_object_get(o->body, "relation");
        int alters_table = !strcmp(o->kind, "AlterTableStmt") && orel && sqlc_same_relation(orel, rel);
        if (!alters_table && sqlc_tree_names(o->body, table, 0))
            return NULL;
    }
    return NULL;
}

/* The alter_column that the file's earlier change of column's type became,
 * when it is that change alone (no recreate, no literal default kept in
 * its old type) and no operation after it names the column; NULL
 * otherwise. */
static json_t *earlier_change(struct conv *c, json_t *rel, const char *column)
{
    static const char *const keys[] = {"schema", "table", "column", "type", "up", "down", "nullable", "default", NULL};
    json_t *found = NULL, *op, *body;
    const char *kind;
    size_t i;
    json_array_foreach(c->ops, i, op) {
        int on = sqlc_op_on(op, rel, &kind, &body);
        if (on && !strcmp(kind, "alter_column") && !strcmp(sqlc_str_or(body, "column", ""), column) &&
            json_object_get(body, "type"))
            found = body;
        else if (found && sqlc_tree_names(op, column, 0))
            found = NULL;
    }
    json_t *def = found ? json_object_get(found, "default") : NULL;
    if (!found || !sql_only_keys(found, keys) || (def && !json_is_null(def)) ||
        !json_is_string(json_object_get(found, "up")))
        return NULL;
    return found;
}

/* expr reads column and nothing else of the row. */
static int reads_column_alone(const char *expr, const char *column)
{
    char **names = NULL;
    size_t n = 0;
    int star = 0;
    if (sql_fragment_columns(expr, &names, &n, &star) != SQL_FRAGMENT_OK)
        return 0;
    int alone = !star;
    for (size_t i = 0; i < n; i++)
        alone = alone && !strcmp(names[i], column);
    sql_fragment_free_names(names, n);
    return alone;
}

int sqlc_compose_retype(struct conv *c, const struct sql_stmt *st, json_t *rel, const char *column, json_t *using,
                        const char *type, const char *up)
{
    json_t *first = retyped_unseen_above(c, st, rel, column) ? earlier_change(c, rel, column) : NULL;
    /* still open when the change was the statement just above: its down,
     * a cast back, is written when it closes */
    if (first && first == c->last.body && sqlc_close_last(c) != 0)
        return -1;
    const char *mid_type = first ? json_string_value(json_object_get(first, "type")) : NULL;
    const char *first_up = first ? json_string_value(json_object_get(first, "up")) : NULL;
    const char *first_down = first ? json_string_value(json_object_get(first, "down")) : NULL;
    if (!first || !first_down || !reads_column_alone(first_up, column) || !reads_column_alone(first_down, column) ||
        !reads_column_alone(up, column))
        return 0;
    char *down = sqlc_retype_down(c, st, using, column, type, up, mid_type);
    if (!down || !reads_column_alone(down, column)) {
        free(down);
        return 0;
    }
    const char *const from[] = {column};
    const char *table = sqlc_str_or(rel, "relname", "");
    char *both_up = sql_fragment_substitute_columns(up, table, from, &first_up, 1);
    char *both_down = sql_fragment_substitute_columns(first_down, table, from, (const char *const *)&down, 1);
    int rc = 0;
    if (both_up && both_down) {
        json_object_set_new(first, "type", json_string(type));
        json_object_set_new(first, "up", json_string(both_up));
        json_object_set_new(first, "down", json_string(both_down));
        rc = 1;
    }
    free(both_up);
    free(both_down);
    free(down);
    return rc;
}

/* Names an earlier statement of the file frees (a column renamed away or
 * dropped, a table renamed or dropped) and a later one takes again: offline
 * the name is free by then; online the old release reads the old column or
 * table under it until the contract. A new column after a rename is added
 * apart until then (the plan: engine/ops/op_add_column.c); the others are
 * refused before any DDL, saying what to write instead. */
#include "sql_convert.h"
#include "sql_convert_conv.h"

#include <stdio.h>
#include <string.h>

/* An operation of this file above that takes `column` of rel (by the
 * table's name now) away by the contract: a rename_column from it or a
 * drop_column of it. Its kind, or NULL; *to the rename's new name, and
 * *apart when a new column can take the name apart until the contract. */
static const char *column_freed_above(struct conv *c, json_t *rel, const char *column, const char **to, int *apart)
{
    /* a rename with new values too: the plan renames a second column at
     * the contract, after dropping the old one, as it renames a plain one */
    static const char *const apart_keys[] = {"schema", "table", "from", "to", "type", "up", "down", NULL};
    size_t i;
    json_t *op;
    const char *hit = NULL;
    json_array_foreach(c->ops, i, op) {
        json_t *body;
        const char *kind;
        if (!sqlc_op_on_now(c, i, op, rel, &kind, &body))
            continue;
        int renamed = !strcmp(kind, "rename_column"), dropped = !strcmp(kind, "drop_column");
        if ((renamed || dropped) && !strcmp(sqlc_str_or(body, renamed ? "from" : "column", ""), column)) {
            hit = kind;
            *to = renamed ? sqlc_str_or(body, "to", "") : NULL;
            *apart = renamed && sql_only_keys(body, apart_keys);
        }
    }
    return hit;
}

int sqlc_refuse_freed_column(struct conv *c, const struct sql_stmt *st, json_t *rel, const char *column, int added)
{
    const char *to = NULL;
    int apart = 0;
    const char *kind = column_freed_above(c, rel, column, &to, &apart);
    if (!kind || (added && apart))
        return 0;   /* a new column under a name renamed away: the plan adds it apart until the contract */
    char away[160];
    if (to)
        snprintf(away, sizeof away, "renamed to \"%s\"", to);
    else
        snprintf(away, sizeof away, "dropped");
    return sqlc_fail(c, st, "column \"%s\" of \"%s\" is %s above, and this %s gives %s its name: the old release "
                     "reads the old column as \"%s\" until the contract, so both would be \"%s\" during the "
                     "migration. Put this %s in a migration after this one (of its own: \"%s\" is free once this "
                     "one completes), or give the %s another name", column, sqlc_str_or(rel, "relname", ""), away,
                     added ? "ADD COLUMN" : "RENAME COLUMN", added ? "a new column" : "another column", column,
                     column, added ? "ADD COLUMN" : "RENAME COLUMN", column, added ? "new column" : "column");
}

int sqlc_refuse_freed_table(struct conv *c, const struct sql_stmt *st, json_t *rel)
{
    size_t i;
    json_t *op;
    const char *how = NULL, *to = NULL;
    json_array_foreach(c->ops, i, op) {
        json_t *renamed = json_object_get(op, "rename_table"), *dropped = json_object_get(op, "drop_table");
        json_t *body = renamed ? renamed : dropped;
        if (body && !strcmp(sqlc_str_or(body, "schema", "public"), sqlc_rel_schema(rel)) &&
            !strcmp(sqlc_str_or(body, renamed ? "from" : "table", ""), sqlc_str_or(rel, "relname", ""))) {
            how = renamed ? "renamed to" : "dropped";
            to = renamed ? sqlc_str_or(body, "to", "") : NULL;
        }
    }
    if (!how)
        return 0;
    return sqlc_fail(c, st, "table \"%s\" is %s%s%s%s above, and this statement makes a new table under its name: "
                     "the old release reads the old table as \"%s\" until the contract, so both would be \"%s\" "
                     "during the migration. Make the new table in a migration after this one (of its own: the name "
                     "is free once this one completes), or give it another name", sqlc_str_or(rel, "relname", ""),
                     how, to ? " \"" : "", to ? to : "", to ? "\"" : "", sqlc_str_or(rel, "relname", ""),
                     sqlc_str_or(rel, "relname", ""));
}

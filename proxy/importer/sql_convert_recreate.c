/* A column dropped and added again under its name in one file (how
 * Prisma changes a column to a type it cannot cast to): the DROP and the
 * ADD become one alter_column to the new type, marked "recreate", so the
 * old release keeps its column, and what depends on it, until the
 * contract, and the new one carries nothing of it, as offline the DROP
 * COLUMN takes the old column's indexes, constraints, comment and grants. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migration_sql.h"
#include "sql_convert_conv.h"

/* "schema.table.column", the key of c->recreated. */
static void recreated_key(json_t *rel, const char *column, char *out, size_t n)
{
    snprintf(out, n, "%s.%s.%s", sqlc_rel_schema(rel), sqlc_str_or(rel, "relname", ""), column);
}

json_t *sqlc_column_cmd(const struct sql_stmt *o, json_t *rel, const char *subtype, const char *column)
{
    json_t *orel = json_object_get(o->body, "relation");
    if (strcmp(o->kind, "AlterTableStmt") != 0 || !orel || !sqlc_same_relation(orel, rel))
        return NULL;
    int adds = !strcmp(subtype, "AT_AddColumn");
    size_t i;
    json_t *cmd;
    json_array_foreach(json_object_get(o->body, "cmds"), i, cmd) {
        json_t *at = json_object_get(cmd, "AlterTableCmd");
        const char *name = adds ? sqlc_str_or(sql_get(at, "def.ColumnDef"), "colname", "") : sqlc_str_or(at, "name", "");
        if (!strcmp(sqlc_str_or(at, "subtype", ""), subtype) && !strcmp(name, column))
            return cmd;
    }
    return NULL;
}

/* An ADD COLUMN of `column` on rel in the script, in statement st or after
 * it: the column is dropped and made again under its name (how Prisma
 * changes a column to a type it cannot cast to, "dropped and recreated"). */
static int added_again(const struct conv *c, const struct sql_stmt *st, json_t *rel, const char *column)
{
    for (const struct sql_stmt *o = st; o < c->s.stmts + c->s.nstmts; o++)
        if (sqlc_column_cmd(o, rel, "AT_AddColumn", column))
            return 1;
    return 0;
}

/* The ADD COLUMN of a column the script dropped: one alter_column to the
 * new type whose `up` is the new column's default (or NULL), as offline
 * every row gets it, and whose `down` is NULL, the old value offline
 * lost (or the "-- pgtandem:down EXPR" above the statement: the plan
 * refuses NULL for a NOT NULL column), marked "recreate"; the old release
 * keeps its column, and what depends on it, until the contract. */
static int recreate_column(struct conv *c, const struct sql_stmt *st, json_t *rel, json_t *col)
{
    const char *name = sqlc_str_or(col, "name", ""), *type = sqlc_str_or(col, "type", "");
    const char *key;
    json_t *v;
    json_object_foreach(col, key, v) {
        if (strcmp(key, "name") && strcmp(key, "type") && strcmp(key, "nullable") && strcmp(key, "default")) {
            json_decref(col);
            return sqlc_fail(c, st, "\"%s\" is dropped and added again with a %s: add the column plainly and the "
                             "constraint with its own ADD CONSTRAINT", name, key);
        }
    }
    struct mig_str up = {0};
    const char *dflt = sqlc_str_or(col, "default", NULL);
    mig_str_addf(&up, "(%s)::%s", dflt ? dflt : "NULL", type);
    json_t *body = json_object();
    sqlc_set_relation(body, rel, "table");
    json_object_set_new(body, "column", json_string(name));
    json_object_set_new(body, "type", json_string(type));
    json_object_set_new(body, "up", json_string(up.buf ? up.buf : ""));
    char *down = sqlc_annotated_down(c, st);
    json_object_set_new(body, "down", json_string(down ? down : "NULL"));
    free(down);
    if (json_object_get(col, "nullable"))
        json_object_set(body, "nullable", json_object_get(col, "nullable"));
    /* the column added again has its own default or none: not the dropped one's */
    json_object_set_new(body, "default", dflt ? json_string(dflt) : json_null());
    /* nor its indexes, constraints, comment or grants: they go with the old
     * column at the contract, as the DROP COLUMN takes them offline */
    json_object_set_new(body, "recreate", json_true());
    free(mig_str_take(&up));
    json_decref(col);
    return sqlc_add_op(c, "alter_column", body) == 0 ? 0 : sqlc_oom(c, st);
}

int sqlc_drop_recreated(struct conv *c, const struct sql_stmt *st, json_t *rel, const char *column)
{
    if (!added_again(c, st, rel, column) || c->nrecreated == sizeof c->recreated / sizeof c->recreated[0])
        return 0;
    recreated_key(rel, column, c->recreated[c->nrecreated++], sizeof c->recreated[0]);
    return 1;
}

int sqlc_add_recreated(struct conv *c, const struct sql_stmt *st, json_t *rel, json_t *col)
{
    char key[sizeof c->recreated[0]];
    recreated_key(rel, sqlc_str_or(col, "name", ""), key, sizeof key);
    for (size_t i = 0; i < c->nrecreated; i++) {
        if (strcmp(c->recreated[i], key) != 0)
            continue;
        c->recreated[i][0] = '\0';    /* one ADD per DROP */
        if (sqlc_close_last(c) != 0) {
            json_decref(col);
            return -1;
        }
        return recreate_column(c, st, rel, col);
    }
    return 1;
}

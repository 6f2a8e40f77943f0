/* A RENAME of an index or constraint the file created earlier under that
 * name (ALTER INDEX x RENAME TO y, ALTER TABLE t RENAME CONSTRAINT x TO y
 * after CREATE INDEX x / ADD CONSTRAINT x): Postgres renames the new
 * object, as the file made the name refer to it. Online the new object is
 * built at expand (under a temporary name when the file dropped an old one
 * of the name first, renamed after the old one's drop at the contract),
 * while the rename would run against the old one still there. The rename
 * folds into the create, which makes the object under its final name:
 * what the two statements do offline. Only when no statement between
 * them names either name (a drop, create or rename of it, a sql
 * operation whose text holds it); else a constraint's rename stays as
 * written (the plan's rename_constraint finds the new one), and an
 * index's, which would reach the old index, is refused before DDL. A
 * foreign key's rename always stays as written (see below). */
#include <string.h>

#include "migration_sql.h"
#include "sql_convert_conv.h"

/* Kinds of operation between the create and the rename that may name the
 * object by either name, or make another under one of them. */
static int may_use_names(const char *kind)
{
    static const char *const kinds[] = {"sql", "drop_index", "drop_constraint", "create_index",
        "create_constraint", "rename_constraint", "rename_table", "drop_table", "create_table", NULL};
    for (const char *const *k = kinds; *k; k++)
        if (!strcmp(*k, kind))
            return 1;
    return 0;
}

/* Whether op, between the create and the rename, names either name: in
 * its fields, or a sql operation anywhere in its text. */
static int names_either(const char *kind, json_t *body, const char *a, const char *b)
{
    if (strcmp(kind, "sql") != 0)
        return sqlc_tree_names(body, a, 0) || sqlc_tree_names(body, b, 0);
    static const char *const keys[] = {"up", "down", NULL};
    for (int k = 0; keys[k]; k++) {
        const char *text = sqlc_str_or(body, keys[k], "");
        if (strstr(text, a) || strstr(text, b))
            return 1;
    }
    return 0;
}

/* Whether an operation of the file drops the index `name` (rel names it). */
static int index_dropped_above(struct conv *c, json_t *rel, const char *name)
{
    size_t i;
    json_t *op;
    json_array_foreach(c->ops, i, op) {
        json_t *body = json_object_get(op, "drop_index");
        if (body && !strcmp(sqlc_str_or(body, "name", ""), name) &&
            !strcmp(sqlc_str_or(body, "schema", "public"), sqlc_rel_schema(rel)))
            return 1;
    }
    return 0;
}

int sqlc_fold_rename_into_create(struct conv *c, const struct sql_stmt *st, json_t *rel, int index, const char *from,
                                 const char *to)
{
    const char *want = index ? "create_index" : "create_constraint";
    size_t i;
    json_t *op, *found = NULL, *blocked = NULL;
    json_array_foreach(c->ops, i, op) {
        json_t *body;
        const char *kind = sqlc_op_kind(op, &body);
        /* something between that names either name (a sql operation by
         * its text): only a create after it may fold */
        if (found && may_use_names(kind) && names_either(kind, body, from, to)) {
            blocked = found;
            found = NULL;
        }
        if (strcmp(kind, want) != 0 || strcmp(sqlc_str_or(body, "schema", "public"), sqlc_rel_schema(rel)) != 0 ||
            strcmp(sqlc_str_or(body, "name", ""), from) != 0)
            continue;
        if (!index && strcmp(sqlc_str_or(body, "table", ""), sqlc_str_or(rel, "relname", "")) != 0)
            continue;
        found = body;
    }
    if (!found && blocked && index && index_dropped_above(c, rel, from))
        /* as written, the rename would reach the old object of the name, still there until the contract */
        return sqlc_fail(c, st, "\"%s\" is made again above after its old index's drop, and a statement between names "
                         "it: online the old one lives until the contract, so this rename would reach it; give the "
                         "new index the name \"%s\" where it is made, or rename it in a migration after this one", from,
                         to);
    /* a foreign key stays as written too: on a partitioned table the
     * table's RENAME CONSTRAINT leaves its partitions' keys under the name
     * they were made with, which a key made under the final name would not
     * (52911-104) */
    if (!found || !strcmp(sqlc_str_or(found, "type", ""), "foreign_key"))
        return 0;
    if (sqlc_close_last(c) != 0)
        return -1;
    return json_object_set_new(found, "name", json_string(to)) == 0 ? 1 : sqlc_oom(c, st);
}

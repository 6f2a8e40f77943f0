/* DROP INDEX y after ALTER INDEX x RENAME TO y in the same file. Offline
 * the index is renamed, then dropped: it ends gone. Online the rename runs
 * at expand (with its way back for a rollback), while the drop waits for
 * the contract, where the old release no longer uses the index; the plan
 * checks the drop against the catalog as it was before the file, which
 * has x and no y, and refused the file. The rename does nothing the end
 * state keeps, so it folds away: the drop names x, the index the old
 * release keeps until the contract. Only when no statement between names
 * x or y (a COMMENT ON INDEX y, a CREATE INDEX x): then both stay as
 * written. A chain of renames folds back to its first name. */
#include <string.h>

#include "sql_convert_conv.h"

void sqlc_remember_index_rename(struct conv *c, const struct sql_stmt *st, json_t *rel)
{
    size_t n = json_array_size(c->ops);
    if (!n || c->nindex_renamed == sizeof c->index_renamed / sizeof c->index_renamed[0])
        return;     /* untracked: a later drop of the new name is checked as written */
    sqlc_copy_name(c->index_renamed[c->nindex_renamed].schema, sqlc_rel_schema(rel));
    sqlc_copy_name(c->index_renamed[c->nindex_renamed].from, sqlc_str_or(rel, "relname", ""));
    sqlc_copy_name(c->index_renamed[c->nindex_renamed].to, sqlc_str_or(st->body, "newname", ""));
    /* held: an operation removed from the array meanwhile is not taken for another made at its address */
    c->index_renamed[c->nindex_renamed].op = json_incref(json_array_get(c->ops, n - 1));
    c->index_renamed[c->nindex_renamed].st = st;
    c->nindex_renamed++;
}

void sqlc_forget_index_renames(struct conv *c)
{
    for (size_t k = 0; k < c->nindex_renamed; k++)
        json_decref(c->index_renamed[k].op);
    c->nindex_renamed = 0;
}

/* Where op is in the operations array, or -1 (removed since). */
static long op_at(const struct conv *c, const json_t *op)
{
    size_t i;
    json_t *o;
    json_array_foreach(c->ops, i, o) {
        if (o == op)
            return (long)i;
    }
    return -1;
}

int sqlc_drop_renamed_index(struct conv *c, const struct sql_stmt *st, const char *schema, char *name)
{
    for (size_t k = c->nindex_renamed; k-- > 0;) {
        if (strcmp(c->index_renamed[k].schema, schema) || strcmp(c->index_renamed[k].to, name))
            continue;
        long at = op_at(c, c->index_renamed[k].op);
        if (at < 0 || sqlc_stmt_naming(c->index_renamed[k].st + 1, st, c->index_renamed[k].from, name))
            return 0;   /* renamed back since, or named between: as written */
        if (json_array_remove(c->ops, (size_t)at) != 0)
            return -1;
        sqlc_copy_name(name, c->index_renamed[k].from);
        st = c->index_renamed[k].st;    /* an earlier rename to this name: what is between it and this one */
        json_decref(c->index_renamed[k].op);
        memmove(&c->index_renamed[k], &c->index_renamed[k + 1],
                (c->nindex_renamed - k - 1) * sizeof c->index_renamed[0]);
        c->nindex_renamed--;
    }
    return 0;
}

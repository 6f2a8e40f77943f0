/* A table renamed after other operations of its migration change it, moved
 * in front of them: the phases address objects, not the names they once
 * had.
 *
 * Offline, `ALTER TABLE t DROP COLUMN c; ALTER TABLE t RENAME TO u` drops
 * the column first. Online every rename_table happens at expand and leaves
 * a view under the old name for the old release, while a drop_column (and
 * the other operations' contract, backfill and validation steps) acts
 * after the expand: by then the old name is that view, and Postgres
 * refuses `ALTER TABLE "t" DROP ...` on it (Prisma writes exactly this:
 * drop a key and a column, rename the table, rename its indexes and keys).
 * Moving the rename in front of the operations that name the table, and
 * naming the table by its new name in them, gives every phase the name the
 * table has when that phase runs, and leaves a migration the planner knows
 * (a rename_table, then changes under the new name). The result is the
 * same table, columns, constraints and indexes as the file in its order.
 *
 * A rename cannot move past an operation it would change the meaning of:
 * one that makes the table under its old name (create_table, a rename_table
 * to it), one that names the new name (a table of that name still there,
 * dropped or renamed away), and a `sql` operation whose text, read with
 * Postgres's parser, holds either name anywhere (we do not rewrite it). When such an operation stands between a change of the
 * table and its rename, the migration is refused before anything runs,
 * saying what to write instead. Each operation's index is its position
 * in the new order (everything downstream reads it so), and messages and
 * `migrate plan` count in that order. */
#include "migration.h"
#include "sql_script.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "table(column)" or "table": the table part is name. */
static int references_table(const char *ref, const char *name)
{
    if (!ref)
        return 0;
    size_t n = strlen(name);
    return !strncmp(ref, name, n) && (ref[n] == '\0' || ref[n] == '(');
}

/* Whether op, in schema, names the table `name` anywhere we rewrite. */
static int names_table(const struct mig_op *op, const char *schema, const char *name)
{
    if (!mig_same_name(op->schema, schema))
        return 0;
    if (mig_same_name(op->table, name) || mig_same_name(op->ref_table, name) ||
        references_table(op->col.references, name))
        return 1;
    if (op->kind == MIG_RENAME_TABLE && (mig_same_name(op->from, name) || mig_same_name(op->to, name)))
        return 1;
    for (size_t i = 0; i < op->ncols; i++)
        if (references_table(op->cols[i].references, name))
            return 1;
    for (size_t i = 0; i < op->ncons; i++)
        if (mig_same_name(op->cons[i].ref_table, name))
            return 1;
    return 0;
}

/* *field names `from`: it names `to` instead. 0, or -1 out of memory. */
static int rename_field(char **field, const char *from, const char *to)
{
    if (!mig_same_name(*field, from))
        return 0;
    char *n = strdup(to);
    if (!n)
        return -1;
    free(*field);
    *field = n;
    return 0;
}

static int rename_reference(char **ref, const char *from, const char *to)
{
    if (!references_table(*ref, from))
        return 0;
    const char *rest = *ref + strlen(from);
    size_t n = strlen(to) + strlen(rest) + 1;
    char *r = malloc(n);
    if (!r)
        return -1;
    snprintf(r, n, "%s%s", to, rest);
    free(*ref);
    *ref = r;
    return 0;
}

static int rename_in_op(struct mig_op *op, const char *from, const char *to)
{
    int rc = rename_field(&op->table, from, to) | rename_field(&op->ref_table, from, to) |
             rename_reference(&op->col.references, from, to);
    for (size_t i = 0; i < op->ncols; i++)
        rc |= rename_reference(&op->cols[i].references, from, to);
    for (size_t i = 0; i < op->ncons; i++)
        rc |= rename_field(&op->cons[i].ref_table, from, to);
    return rc;
}

/* The tree holds a name equal to one of the two (a relation, a column
 * qualifier, a string naming it): it may mean the table. */
static int tree_names(json_t *node, const char *a, const char *b)
{
    if (json_is_string(node))
        return !strcmp(json_string_value(node), a) || !strcmp(json_string_value(node), b);
    size_t i;
    json_t *v;
    if (json_is_array(node)) {
        json_array_foreach(node, i, v) {
            if (tree_names(v, a, b))
                return 1;
        }
        return 0;
    }
    const char *key;
    json_object_foreach(node, key, v) {
        if (tree_names(v, a, b))
            return 1;
    }
    return 0;
}

/* A statement run as written may name the table: read with Postgres's
 * parser, it is no barrier when no name in it is either name of the table
 * (CREATE TYPE, an index of another table); one that does not parse is. */
static int sql_may_name(const struct mig_op *op, const char *from, const char *to)
{
    const char *texts[2] = {op->up, op->down};
    for (int k = 0; k < 2; k++) {
        if (!texts[k])
            continue;
        struct sql_script s;
        char err[256];
        if (sql_script_parse(&s, "sql", texts[k], strlen(texts[k]), err, sizeof err) != 0)
            return 1;
        int named = tree_names(s.root, from, to);
        sql_script_free(&s);
        if (named)
            return 1;
    }
    return 0;
}

/* An operation a rename of schema.from to `to` cannot move in front of. */
static int barrier(const struct mig_op *op, const char *schema, const char *from, const char *to)
{
    if (op->kind == MIG_SQL)
        return sql_may_name(op, from, to);
    if (!mig_same_name(op->schema, schema))
        return 0;
    if (op->kind == MIG_CREATE_TABLE && mig_same_name(op->table, from))
        return 1;
    if (op->kind == MIG_RENAME_TABLE && mig_same_name(op->to, from))
        return 1;
    return names_table(op, schema, to);
}

static int refuse(const struct migration *m, size_t j, size_t k, size_t b, char *err, size_t errlen)
{
    const struct mig_op *r = &m->ops[j], *o = &m->ops[k], *w = &m->ops[b];
    snprintf(err, errlen,
             "%s: operations[%d].rename_table renames \"%s\" to \"%s\" after operations[%d].%s changes it, and "
             "operations[%d].%s stands between them; online the rename happens at expand, before the other "
             "changes take effect, so it must come first: put the rename before operations[%d] (naming the "
             "table \"%s\" from there on), or move operations[%d] out of the way",
             m->file ? m->file : m->name, r->index, r->from, r->to, o->index, mig_op_name(o->kind), w->index,
             mig_op_name(w->kind), o->index, r->to, w->index);
    return -1;
}

int mig_table_renames_first(struct migration *m, char *err, size_t errlen)
{
    for (size_t j = 0; j < m->nops; j++) {
        struct mig_op *r = &m->ops[j];
        if (r->kind != MIG_RENAME_TABLE || !r->from || !r->to)
            continue;
        /* the first change of the table by its old name, and the last
         * operation the rename cannot move past */
        size_t first = j, stop = 0;
        int stopped = 0;
        for (size_t k = 0; k < j; k++) {
            const struct mig_op *o = &m->ops[k];
            if (barrier(o, r->schema, r->from, r->to)) {
                stop = k;
                stopped = 1;
            } else if (names_table(o, r->schema, r->from) && first == j) {
                first = k;
            }
        }
        if (first == j)
            continue;
        if (stopped && stop > first)
            return refuse(m, j, first, stop, err, errlen);
        for (size_t k = first; k < j; k++)
            if (rename_in_op(&m->ops[k], r->from, r->to) != 0) {
                snprintf(err, errlen, "out of memory");
                return -1;
            }
        struct mig_op moved = *r;
        memmove(&m->ops[first + 1], &m->ops[first], (j - first) * sizeof moved);
        m->ops[first] = moved;
        /* from here on the messages count in this order, which the plan shows */
        mig_ops_renumber(m, first, j);
    }
    return 0;
}

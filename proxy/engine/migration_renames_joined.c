/* Two renames of one column, `a` to `b` and later `b` to `c`, with nothing
 * between them reading `b` (or naming `c`), become one rename of `a` to
 * `c` where the first stood.
 *
 * Offline the two leave the column, its values and everything built on it
 * as one rename does. Online each rename that a later operation builds on
 * takes a second column filled by the backfill, and the second rename's
 * column would be filled from the first's: one backfill UPDATE reads the
 * first second column as it was before the statement (NULL), so the last
 * column stayed empty (a CHECK such as a later SET NOT NULL's met it in
 * the first batch, after DDL had run), and what the catalog carries to a
 * second column (foreign keys, indexes, CHECKs) was read off the original
 * column only, so the first second column's copies were dropped with it.
 * One rename has one column to fill from the original, and the original's
 * dependents are carried to it. ORMs write the pair when a field is renamed
 * twice before the migration is generated, or a rename is undone halfway.
 *
 * Only plain renames join (no type, up, down, default or copy: those move
 * values and would fill the next column from their own); an operation in
 * between that names `b` or `c` anywhere (matched as text, the cautious
 * answer) keeps them apart, and a pair that names the column back (`a`
 * to `b` to `a`) is left as written. Indexes are positions in the new
 * order, as in migration_renames_first.c. */
#include "migration.h"

#include <stdlib.h>
#include <string.h>

static int plain_rename(const struct mig_op *op)
{
    return op->kind == MIG_RENAME_COLUMN && op->schema && op->table && op->from && op->to && !op->type && !op->up &&
           !op->down && !op->has_default && !op->copy;
}

static int text_has(const char *text, const char *name)
{
    return text && strstr(text, name) != NULL;
}

static int strs_have(char *const *v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (text_has(v[i], name))
            return 1;
    return 0;
}

static int column_has(const struct mig_column *col, const char *name)
{
    return text_has(col->name, name) || text_has(col->default_expr, name) || text_has(col->check, name) ||
           text_has(col->references, name) || text_has(col->generated, name);
}

/* Whether op may name the column `name`: any of its names or expressions
 * holds the text. */
static int mentions(const struct mig_op *op, const char *name)
{
    if (text_has(op->from, name) || text_has(op->to, name) || text_has(op->column, name) ||
        text_has(op->up, name) || text_has(op->down, name) || text_has(op->default_expr, name) ||
        text_has(op->check, name) || text_has(op->where, name) || text_has(op->name, name) ||
        strs_have(op->columns, op->ncolumns, name) || strs_have(op->keys, op->nkeys, name) ||
        strs_have(op->include, op->ninclude, name) || strs_have(op->ref_columns, op->nref_columns, name) ||
        column_has(&op->col, name))
        return 1;
    for (size_t i = 0; i < op->ncols; i++)
        if (column_has(&op->cols[i], name))
            return 1;
    for (size_t i = 0; i < op->ncons; i++) {
        const struct mig_constraint *k = &op->cons[i];
        if (text_has(k->check, name) || strs_have(k->columns, k->ncolumns, name) ||
            strs_have(k->ref_columns, k->nref_columns, name))
            return 1;
    }
    return 0;
}

/* The later rename of r's new name that joins r, or 0. */
static size_t joining(const struct migration *m, size_t i)
{
    const struct mig_op *r = &m->ops[i];
    for (size_t j = i + 1; j < m->nops; j++) {
        const struct mig_op *o = &m->ops[j];
        if (plain_rename(o) && mig_same_name(o->schema, r->schema) && mig_same_name(o->table, r->table) &&
            mig_same_name(o->from, r->to)) {
            if (mig_same_name(o->to, r->from))
                return 0;
            for (size_t k = i + 1; k < j; k++)
                if (mentions(&m->ops[k], r->to) || mentions(&m->ops[k], o->to))
                    return 0;
            return j;
        }
    }
    return 0;
}

void mig_column_renames_joined(struct migration *m)
{
    for (size_t i = 0; i < m->nops; i++) {
        if (!plain_rename(&m->ops[i]))
            continue;
        size_t j;
        /* a chain a -> b -> c -> d joins one link at a time */
        while ((j = joining(m, i)) != 0) {
            struct mig_op *r = &m->ops[i], *o = &m->ops[j];
            char *to = o->to;
            o->to = NULL;
            free(r->to);
            r->to = to;
            mig_op_free(o);
            memmove(&m->ops[j], &m->ops[j + 1], (m->nops - j - 1) * sizeof *o);
            m->nops--;
            mig_ops_renumber(m, j, m->nops);
        }
    }
}

/* Whether a column change of the migration moves data or happens in the
 * catalog alone: a rename that keeps the column's values keeps the
 * original column (the contract renames it), an alter_column with no
 * up/down, check or rewrite changes it in place. The shapes' views, the
 * carried dependents and the operations themselves ask the same question,
 * so it is answered once, here. */
#include "migration_plan.h"
#include "plan_ctx.h"

#include <string.h>

static int names_column(const char *const *cols, size_t n, const char *col)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(cols[i], col) == 0)
            return 1;
    return 0;
}

/* Does a later operation of the migration build something on `col` of the
 * table (an index, a constraint, another change of the column)? Expressions
 * are matched as text, so a mere mention counts: the cautious answer. */
static int later_op_builds_on(const struct plan_ctx *c, const struct mig_op *op, const char *col)
{
    for (size_t i = (size_t)op->index + 1; i < c->m->nops; i++) {
        const struct mig_op *o = &c->m->ops[i];
        if (!o->table || strcmp(o->schema, op->schema) || strcmp(o->table, op->table))
            continue;
        if ((o->from && !strcmp(o->from, col)) || (o->column && !strcmp(o->column, col)) ||
            names_column((const char *const *)o->columns, o->ncolumns, col) ||
            names_column((const char *const *)o->include, o->ninclude, col) ||
            (o->where && strstr(o->where, col)) || (o->check && strstr(o->check, col)) ||
            (o->up && strstr(o->up, col)) || (o->down && strstr(o->down, col)))
            return 1;
        for (size_t k = 0; k < o->nkeys; k++)
            if (strstr(o->keys[k], col))
                return 1;
    }
    return 0;
}

/* See migration_plan.h: a rename that keeps the column's values as
 * they are keeps the original column and renames it at contract. */
int rename_keeps_original(const struct plan_ctx *c, const struct mig_op *op)
{
    if (op->up || op->down || later_op_builds_on(c, op, op->to))
        return 0;
    if (!op->type)
        return 1;
    const char *old_type = column_type(c, op->schema, op->table, op->from);
    if (old_type && strcmp(old_type, op->type) == 0)
        return 1;
    /* a longer varchar and the like: the contract changes the type too */
    return !op->copy && retype_in_place(c, op, op->from);
}

int alter_in_place(const struct plan_ctx *c, const struct mig_op *op)
{
    if (op->up || op->down || op->check || op->recreate)
        return 0;
    const char *now = column_type(c, op->schema, op->table, op->column);
    if (!op->type || (now && !strcmp(now, op->type)))
        return 1;
    return retype_in_place(c, op, op->column);
}

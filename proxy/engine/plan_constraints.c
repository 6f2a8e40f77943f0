/* A table's named constraints as the migration's earlier operations leave
 * them: drop_constraint and rename_constraint run at the contract, in the
 * migration's order, so each must find the constraint it names where the
 * operations before it put it (created, renamed, dropped), not only in the
 * snapshot of the catalog. */
#include "migration_plan.h"
#include "plan_ctx.h"

#include <string.h>

const char *constraint_kind_name(char contype)
{
    switch (contype) {
    case 'c': return "check";
    case 'f': return "foreign key";
    case 'p': return "primary key";
    case 'u': return "unique";
    case 'x': return "exclusion";
    case 't': return "constraint trigger";
    default: return "";
    }
}

static char created_kind(const struct mig_op *o)
{
    if (!strcmp(o->constraint_type, "check"))
        return 'c';
    return !strcmp(o->constraint_type, "unique") ? 'u' : 'f';
}

static int same_table(const struct mig_op *o, const struct mig_op *op, const char *table)
{
    return o->table && !strcmp(o->schema, op->schema) && !strcmp(o->table, table);
}

void constraint_now(const struct plan_ctx *c, const struct mig_op *op, const char *table, const char *name,
                    struct constraint_now *out)
{
    memset(out, 0, sizeof *out);
    for (int i = op->index - 1; i >= 0; i--) {
        const struct mig_op *o = &c->m->ops[i];
        if (!same_table(o, op, table))
            continue;
        if (o->kind == MIG_DROP_TABLE || (o->kind == MIG_DROP_CONSTRAINT && !strcmp(o->name, name)) ||
            (o->kind == MIG_RENAME_CONSTRAINT && !strcmp(o->from, name))) {
            out->gone_by = o;
            return;
        }
        if (o->kind == MIG_RENAME_CONSTRAINT && !strcmp(o->to, name)) {
            out->made_by = o;
            name = o->from;     /* it had its old name before */
        } else if (o->kind == MIG_CREATE_CONSTRAINT && !strcmp(o->name, name)) {
            out->made_by = o;
            out->exists = 1;
            out->contype = created_kind(o);
            return;
        }
    }
    const struct mig_cat_table *t = table_of(c, op->schema, table);
    out->cat = t ? mig_catalog_constraint(c->cat, op->schema, t->name, name) : NULL;
    out->exists = out->cat && out->cat->exists;
    out->contype = out->exists ? out->cat->contype : 0;
}

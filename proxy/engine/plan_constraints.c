/* A table's named constraints as the migration's earlier operations leave
 * them: drop_constraint and rename_constraint run at the contract, in the
 * migration's order, so each must find the constraint it names where the
 * operations before it put it (created, renamed, dropped), not only in the
 * snapshot of the catalog.
 *
 * And the name a new constraint or index can have at expand. The old one
 * an earlier operation drops (or renames) is still there until the
 * contract, so a constraint dropped and added again under the same name
 * (how Prisma and drizzle-kit change a foreign key's ON DELETE, a CHECK's
 * expression, a UNIQUE's columns) is made under a temporary name and takes
 * its own at the contract; an index dropped and created again, likewise
 * after the contract's drop_index, and one made under the name of a
 * constraint's index that an earlier rename_constraint renames, after the
 * contract's rename. A name that would still be taken then
 * is refused before any DDL, as Postgres would refuse it offline: expand
 * would fail on it, and its rollback, which drops what expand made by
 * name, would drop the object that was there. */
#include "migration_plan.h"
#include "plan_ctx.h"
#include "sql_script.h"

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
    if (!strcmp(o->constraint_type, "primary_key"))
        return 'p';
    return !strcmp(o->constraint_type, "unique") ? 'u' : 'f';
}

static int same_table(const struct mig_op *o, const struct mig_op *op, const char *table)
{
    return o->table && !strcmp(o->schema, op->schema) && !strcmp(o->table, table);
}

/* Whether the catalog's constraint (index 0) or index (1) `name` of t
 * depends on column col, and so goes with it when the column is dropped:
 * a constraint reading it, an index on it (keys, expressions, predicate),
 * or the index of a UNIQUE or primary key constraint on it. */
static int goes_with_column(const struct mig_cat_table *t, const char *name, const char *col, int index)
{
    for (size_t i = 0; t && i < t->ndeps; i++) {
        const struct mig_cat_dep *d = &t->deps[i];
        if (d->foreign || strcmp(d->column, col) != 0)
            continue;
        if (d->kind == (index ? MIG_DEP_INDEX : MIG_DEP_CONSTRAINT) && !strcmp(d->name, name))
            return 1;
        for (size_t k = 0; index && d->kind == MIG_DEP_CONSTRAINT && k < t->nidx; k++)
            if (t->idx[k].constraint && !strcmp(t->idx[k].constraint, d->name) && !strcmp(t->idx[k].name, name))
                return 1;
    }
    return 0;
}

/* o drops a column of the table at the contract (drop_column, or an
 * alter_column that drops it and adds it again under its name), taking
 * along the catalog's constraint or index `name` of t, as the offline
 * DROP COLUMN does: the name is free from then on. */
static int column_drop_takes(const struct mig_cat_table *t, const struct mig_op *o, const char *name, int index)
{
    return (o->kind == MIG_DROP_COLUMN || (o->kind == MIG_ALTER_COLUMN && o->recreate)) && o->column &&
           goes_with_column(t, name, o->column, index);
}

void constraint_now(const struct plan_ctx *c, const struct mig_op *op, const char *table, const char *name,
                    struct constraint_now *out)
{
    memset(out, 0, sizeof *out);
    const struct mig_cat_table *t = table_of(c, op->schema, table);
    for (int i = op->index - 1; i >= 0; i--) {
        const struct mig_op *o = &c->m->ops[i];
        if (!same_table(o, op, table))
            continue;
        if (o->kind == MIG_DROP_TABLE || (o->kind == MIG_DROP_CONSTRAINT && !strcmp(o->name, name)) ||
            (o->kind == MIG_RENAME_CONSTRAINT && !strcmp(o->from, name)) || column_drop_takes(t, o, name, 0)) {
            out->gone_by = o;
            return;
        }
        if (o->kind == MIG_RENAME_CONSTRAINT && !strcmp(o->to, name)) {
            out->made_by = o;
            name = o->from;     /* it had its old name before */
        } else if (o->kind == MIG_CREATE_CONSTRAINT && o->name && !strcmp(o->name, name)) {
            out->made_by = o;
            out->exists = 1;
            out->contype = created_kind(o);
            return;
        }
    }
    out->cat = t ? mig_catalog_constraint(c->cat, op->schema, t->name, name) : NULL;
    out->exists = out->cat && out->cat->exists;
    out->contype = out->exists ? out->cat->contype : 0;
}

/* The constraint of the catalog as the migration found it, by the table's
 * name there. */
static const struct mig_cat_constraint *catalog_constraint(const struct plan_ctx *c, const struct mig_op *op,
                                                           const char *name)
{
    const struct mig_cat_table *t = table_of(c, op->schema, op->table);
    const struct mig_cat_constraint *k = t ? mig_catalog_constraint(c->cat, op->schema, t->name, name) : NULL;
    return k && k->exists ? k : NULL;
}

static int has_index(char contype)
{
    return contype == 'p' || contype == 'u' || contype == 'x';
}

/* When an earlier rename of the migration takes an index name away. */
enum name_freed {
    NAME_NOT_FREED,
    NAME_FREED_AT_CONTRACT,  /* rename_constraint of the unique, primary key or exclusion key whose index has it */
    NAME_FREED_AT_EXPAND,    /* ALTER INDEX ... RENAME, run as SQL in the expand */
};

/* The nearest earlier rename of the index name, and when it frees it. */
static enum name_freed earlier_rename_frees(const struct plan_ctx *c, const struct mig_op *op, const char *name)
{
    for (int i = op->index - 1; i >= 0; i--) {
        const struct mig_op *o = &c->m->ops[i];
        if (o->kind == MIG_RENAME_CONSTRAINT && !strcmp(o->schema, op->schema) && !strcmp(o->from, name)) {
            const struct mig_cat_constraint *k = catalog_constraint(c, o, name);
            if (k && has_index(k->contype))
                return NAME_FREED_AT_CONTRACT;
        }
        if (o->kind == MIG_SQL && o->on == MIG_ON_START && o->up && sql_renames_index(o->up, op->schema, name))
            return NAME_FREED_AT_EXPAND;
    }
    return NAME_NOT_FREED;
}

int constraint_name_at_expand(struct plan_ctx *c, const struct mig_op *op, const char *name, int index_backed)
{
    if (!c->cat)
        return 0;
    struct constraint_now k;
    constraint_now(c, op, op->table, name, &k);
    if (k.exists && k.made_by)
        return op_error(c, op, "constraint \"%s\" for relation \"%s\" already exists: operations[%d].%s makes "
                        "it, and Postgres would refuse the ADD CONSTRAINT (42710); give this one another name",
                        name, op->table, k.made_by->index, mig_op_name(k.made_by->kind));
    /* ALTER INDEX ... RENAME renames the constraint the index is behind */
    if (k.exists && has_index(k.contype) && earlier_rename_frees(c, op, name) == NAME_FREED_AT_EXPAND)
        return 0;
    if (k.exists)
        return op_error(c, op, "constraint \"%s\" for relation \"%s\" already exists, and Postgres would refuse "
                        "the ADD CONSTRAINT (42710). To change it, drop it first in this migration (a "
                        "drop_constraint before this operation: the new one is added under a temporary name and "
                        "takes this one at the contract), or give this one another name", name, op->table);
    const struct mig_cat_constraint *was = catalog_constraint(c, op, name);
    /* the index of a unique, primary key or exclusion constraint has its
     * name, and goes with it; any other relation of that name stays */
    const struct mig_cat_table *t = table_of(c, op->schema, op->table);
    const struct mig_cat_constraint *any = t ? mig_catalog_constraint(c->cat, op->schema, t->name, name) : NULL;
    int relation_stays = any && any->relation_taken && !(was && has_index(was->contype) && k.gone_by);
    if (index_backed && relation_stays)
        return op_error(c, op, "relation \"%s\" already exists in schema \"%s\": the constraint's index takes "
                        "its name, and Postgres would refuse (42P07); give the constraint another name, or drop "
                        "that relation in an earlier migration", name, op->schema);
    return was || k.gone_by || k.made_by ? 1 : 0;
}

/* An earlier drop_index of the migration that drops index name (after the
 * contract), or an earlier drop of a column the index depends on (in the
 * contract, which takes the index along); NULL when none does. */
static const struct mig_op *earlier_drop_index(const struct plan_ctx *c, const struct mig_op *op, const char *name)
{
    for (int i = op->index - 1; i >= 0; i--) {
        const struct mig_op *o = &c->m->ops[i];
        if (o->kind == MIG_DROP_INDEX && !strcmp(o->schema, op->schema) && !strcmp(o->name, name))
            return o;
        /* an index name is the schema's: the one on o's table is that one */
        if (o->table && !strcmp(o->schema, op->schema) &&
            column_drop_takes(table_of(c, o->schema, o->table), o, name, 1))
            return o;
    }
    return NULL;
}

int index_name_at_expand(struct plan_ctx *c, const struct mig_op *op, const char *name)
{
    if (!c->cat)
        return 0;
    if (earlier_drop_index(c, op, name))
        return 1;
    enum name_freed freed = earlier_rename_frees(c, op, name);
    if (freed != NAME_NOT_FREED)
        return freed == NAME_FREED_AT_CONTRACT;     /* built under a temporary name, renamed after it */
    const struct mig_cat_named_index *ix = mig_catalog_named_index(c->cat, op->schema, name);
    if (ix && ix->exists)
        return op_error(c, op, "relation \"%s\" already exists in schema \"%s\" (an index on %s), and Postgres "
                        "would refuse the CREATE INDEX (42P07). To change it, drop it first in this migration (a "
                        "drop_index before this operation: the new one is built under a temporary name and takes "
                        "this one after the contract), or give this one another name", name, op->schema,
                        ix->table ? ix->table : "?");
    return 0;
}

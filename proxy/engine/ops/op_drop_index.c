/* drop_index: both releases keep the index while the migration runs. It
 * goes once the contract has committed, CONCURRENTLY: a plain DROP INDEX
 * takes ACCESS EXCLUSIVE on its table, and inside the contract it would
 * wait there, holding the cutover, for every query using it.
 *
 * A partitioned table's index cannot be dropped CONCURRENTLY (nor can a
 * partition's, attached to it, be dropped alone): it goes after the
 * contract by a plain DROP INDEX, in its own short transaction with the
 * contract's lock_timeout and retries. That takes ACCESS EXCLUSIVE on the
 * table and every partition, for a catalog change only (nothing is
 * scanned or rewritten; the files go at commit).
 *
 * What Postgres would refuse there, after the new release is out, or what
 * would drop nothing, is refused before any DDL: an index that does not
 * exist, one that backs a constraint (dropping the constraint drops it),
 * one a foreign key looks rows up through, and a partition's index
 * attached to a partitioned table's. */
#include "ops/op.h"
#include "migration_plan.h"
#include "plan_ctx.h"

#include <stdlib.h>
#include <string.h>

static const char *constraint_kind(char contype)
{
    switch (contype) {
    case 'p': return "primary key";
    case 'u': return "unique";
    case 'x': return "exclusion";
    default: return "";
    }
}

/* table: as SQL (quoted where it must be) */
static int refuse_constraint_index(struct plan_ctx *c, const struct mig_op *op, char contype,
                                   const char *constraint, const char *table, const char *made_by)
{
    struct mig_str s = {0};
    mig_str_addf(&s, "ALTER TABLE %s DROP CONSTRAINT ", table);
    mig_str_ident(&s, constraint);
    char *fix = mig_str_take(&s);
    op_error(c, op, "index \"%s\" backs the %s constraint \"%s\" of table %s%s, and Postgres refuses to drop "
             "it alone (cannot drop index %s because constraint %s on table %s requires it); dropping the "
             "constraint drops its index: drop the constraint instead (an \"sql\" operation: %s) and leave out "
             "this drop_index", op->name, constraint_kind(contype), constraint, table, made_by, op->name,
             constraint, table, fix ? fix : "ALTER TABLE ... DROP CONSTRAINT");
    free(fix);
    return -1;
}

/* The latest earlier operation of the migration that creates or drops
 * index op->name: a create_index, a create_constraint of type unique (its
 * index takes its name), a drop_index. */
static const struct mig_op *earlier_with_index(const struct plan_ctx *c, const struct mig_op *op)
{
    for (size_t i = (size_t)op->index; i-- > 0;) {
        const struct mig_op *o = &c->m->ops[i];
        int makes = o->kind == MIG_CREATE_INDEX || o->kind == MIG_DROP_INDEX ||
                    (o->kind == MIG_CREATE_CONSTRAINT && strcmp(o->constraint_type, "unique") == 0);
        if (makes && o->name && strcmp(o->schema, op->schema) == 0 && strcmp(o->name, op->name) == 0)
            return o;
    }
    return NULL;
}

static int refuse_made_earlier(struct plan_ctx *c, const struct mig_op *op, const struct mig_op *o)
{
    if (o->kind == MIG_DROP_INDEX)
        return op_error(c, op, "index \"%s\" in schema \"%s\" is already dropped by operations[%d].drop_index; "
                        "leave out one of them", op->name, op->schema, o->index);
    if (o->kind == MIG_CREATE_CONSTRAINT) {
        char made_by[64];
        snprintf(made_by, sizeof made_by, " (created by operations[%d].create_constraint)", o->index);
        struct mig_str t = {0};
        mig_str_qname(&t, o->schema, o->table);
        char *table = mig_str_take(&t);
        refuse_constraint_index(c, op, 'u', o->name, table ? table : o->table, made_by);
        free(table);
        return -1;
    }
    return 0;   /* a create_index: built at expand, dropped after the contract */
}

static int refuse_fkey_user(struct plan_ctx *c, const struct mig_op *op, const struct mig_cat_named_index *ix)
{
    for (size_t i = 0; i < ix->nfkeys; i++) {
        const struct mig_cat_ref *f = &ix->fkeys[i];
        if (removes_fkey(c, op, f, 1))   /* the contract drops it, before this drop_index */
            continue;
        return op_error(c, op, "cannot drop index \"%s\" because other objects depend on it: constraint \"%s\" on "
                        "table \"%s.%s\" is a foreign key that looks referenced rows up through it, and Postgres "
                        "refuses the DROP INDEX (2BP01) after the contract, once the new release is out. Drop that "
                        "constraint in an earlier migration, or drop table \"%s.%s\" in this one",
                        op->name, f->name, f->schema, f->table, f->schema, f->table);
    }
    return 0;
}

static int refuse_drop(struct plan_ctx *c, const struct mig_op *op)
{
    const struct mig_op *o = earlier_with_index(c, op);
    if (o)
        return refuse_made_earlier(c, op, o);
    const struct mig_cat_named_index *ix = mig_catalog_named_index(c->cat, op->schema, op->name);
    if ((!ix || !ix->exists) && op->if_exists)
        return 0;
    if (!ix || !ix->exists)
        return op_error(c, op, "index \"%s\" does not exist in schema \"%s\"; the drop_index would drop nothing. "
                        "Check its name (pg_indexes lists them) and schema, or say \"if_exists\": true, or leave "
                        "out the operation", op->name, op->schema);
    if (ix->constraint)
        return refuse_constraint_index(c, op, ix->contype, ix->constraint, ix->table, "");
    if (ix->parent)
        return op_error(c, op, "index \"%s\" is attached to index %s of the partitioned table, and Postgres "
                        "refuses to drop it alone (cannot drop index %s because index %s requires it); drop "
                        "index %s instead, which drops every partition's with it", op->name, ix->parent,
                        op->name, ix->parent, ix->parent);
    return refuse_fkey_user(c, op, ix);
}

static int plan_drop_index(struct plan_ctx *c, const struct mig_op *op)
{
    if (c->cat && refuse_drop(c, op))
        return -1;
    const struct mig_cat_named_index *ix = mig_catalog_named_index(c->cat, op->schema, op->name);
    /* made by this migration (a create_index above) on a partitioned
     * table: the catalog does not have it, its table says what it is */
    const struct mig_op *made = earlier_with_index(c, op);
    const struct mig_cat_table *parted = made && made->kind == MIG_CREATE_INDEX && made->table
                                             ? partitioned_table(c, made->schema, made->table) : NULL;
    int partitioned = (ix && ix->exists && ix->relkind == 'I') || parted;
    mig_steps_add(&c->p->post, op->index, partitioned ? MIG_STEP_TXN : MIG_STEP_ALONE,
                  drop_index_sql(op->schema, op->name, !partitioned));
    if (partitioned)
        carried(c, op, "index \"%s\" of partitioned table %s: dropped after the contract by a plain DROP INDEX "
                "(never CONCURRENTLY on a partitioned table), a catalog change under ACCESS EXCLUSIVE on the "
                "table and each partition, with lock_timeout and retries", op->name,
                parted ? made->table : ix->table);
    return 0;
}

const struct mig_op_def op_drop_index = {
    .kind = MIG_DROP_INDEX, .plan = plan_drop_index, .changes_columns = 0,
};

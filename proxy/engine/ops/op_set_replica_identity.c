/* set_replica_identity: what logical decoding writes of an updated or
 * deleted row (DEFAULT: the primary key, FULL: every column, NOTHING, or
 * the columns of a unique index). The old release's replication keeps the
 * identity it was set up with until the contract, which changes it: a
 * change of the catalog alone.
 *
 * An index must be what Postgres accepts at the contract, checked before
 * any DDL: on the table, unique, not deferrable, without predicate or
 * expression, valid, every key column NOT NULL (or made so by an earlier
 * alter_column of the migration). An index the migration creates earlier
 * (create_index, built at expand) is checked from its operation. */
#include "ops/op.h"
#include "migration_plan.h"
#include "plan_ctx.h"

#include <string.h>

/* Whether col of table is NOT NULL once the earlier operations' contract
 * steps have run. */
static int not_null_then(const struct plan_ctx *c, const struct mig_op *op, const char *col)
{
    for (int i = op->index - 1; i >= 0; i--) {
        const struct mig_op *o = &c->m->ops[i];
        if (!o->table || strcmp(o->schema, op->schema) || strcmp(o->table, op->table))
            continue;
        if (o->kind == MIG_ALTER_COLUMN && !strcmp(o->column, col) && o->nullable >= 0)
            return !o->nullable;
        if (o->kind == MIG_ADD_COLUMN && !strcmp(o->col.name, col))
            return o->col.nullable == 0 || o->col.primary_key == 1;
    }
    const struct mig_cat_column *cc = mig_catalog_column(table_of(c, op->schema, op->table), col);
    return cc && cc->notnull;
}

static int refuse_nullable(struct plan_ctx *c, const struct mig_op *op, const char *col)
{
    return op_error(c, op, "index \"%s\" cannot be used as replica identity because column \"%s\" is nullable, "
                    "and Postgres would refuse it at the contract; make the column NOT NULL first (alter_column "
                    "with \"nullable\": false, earlier in this migration or in an earlier one)", op->name, col);
}

static const struct mig_op *created_earlier(const struct plan_ctx *c, const struct mig_op *op)
{
    for (int i = op->index - 1; i >= 0; i--) {
        const struct mig_op *o = &c->m->ops[i];
        if ((o->kind == MIG_CREATE_INDEX || o->kind == MIG_DROP_INDEX) && !strcmp(o->schema, op->schema) &&
            !strcmp(o->name, op->name))
            return o->kind == MIG_CREATE_INDEX ? o : NULL;
    }
    return NULL;
}

static int refuse_planned_index(struct plan_ctx *c, const struct mig_op *op, const struct mig_op *o)
{
    const char *why = strcmp(o->table, op->table) ? "it is on another table"
                      : o->unique != 1                  ? "it is not unique"
                      : o->where                        ? "it is partial (\"where\")"
                      : o->keys                         ? "its keys are expressions"
                                                        : NULL;
    if (why)
        return op_error(c, op, "index \"%s\" (created by operations[%d].create_index) cannot be the replica "
                        "identity of table \"%s.%s\": %s, and Postgres would refuse it at the contract", op->name,
                        o->index, op->schema, op->table, why);
    for (size_t i = 0; i < o->ncolumns; i++)
        if (!not_null_then(c, op, o->columns[i]))
            return refuse_nullable(c, op, o->columns[i]);
    return 0;
}

static int refuse_index(struct plan_ctx *c, const struct mig_op *op)
{
    const struct mig_op *o = created_earlier(c, op);
    if (o)
        return refuse_planned_index(c, op, o);
    const struct mig_cat_table *t = table_of(c, op->schema, op->table);
    const struct mig_cat_ident_index *x = t ? mig_catalog_ident_index(c->cat, op->schema, t->name, op->name) : NULL;
    if (!x || !x->exists)
        return op_error(c, op, "index \"%s\" does not exist in schema \"%s\"; check its name (pg_indexes lists "
                        "them), or create it with create_index (unique) earlier in this migration", op->name,
                        op->schema);
    const char *why = !x->on_this_table ? "it is an index of another table"
                      : !x->unique      ? "it is not unique (cannot use non-unique index)"
                      : !x->immediate   ? "it is deferrable (cannot use non-immediate index)"
                      : x->expressions  ? "it has expressions (cannot use expression index)"
                      : x->partial      ? "it is partial (cannot use partial index)"
                      : !x->valid       ? "it is invalid, a failed CREATE INDEX CONCURRENTLY (cannot use invalid index)"
                                        : NULL;
    if (why)
        return op_error(c, op, "index \"%s\" (on %s) cannot be the replica identity of table \"%s.%s\": %s, and "
                        "Postgres would refuse it at the contract", op->name, x->on_table ? x->on_table : "?",
                        op->schema, op->table, why);
    for (size_t i = 0; i < x->nnullable; i++)
        if (!not_null_then(c, op, x->nullable[i]))
            return refuse_nullable(c, op, x->nullable[i]);
    return 0;
}

static int plan_set_replica_identity(struct plan_ctx *c, const struct mig_op *op)
{
    int by_index = strcmp(op->identity, "index") == 0;
    if (require_table(c, op, op->table) || (c->cat && by_index && refuse_index(c, op)))
        return -1;
    struct mig_str s = {0};
    mig_str_add(&s, "ALTER TABLE ");
    mig_str_qname(&s, op->schema, op->table);
    if (by_index) {
        mig_str_add(&s, " REPLICA IDENTITY USING INDEX ");
        mig_str_ident(&s, op->name);
    } else {
        mig_str_addf(&s, " REPLICA IDENTITY %s", !strcmp(op->identity, "full") ? "FULL"
                                                 : !strcmp(op->identity, "nothing") ? "NOTHING" : "DEFAULT");
    }
    mig_steps_add(&c->p->contract, op->index, MIG_STEP_TXN, mig_str_take(&s));
    return 0;
}

const struct mig_op_def op_set_replica_identity = {
    .kind = MIG_SET_REPLICA_IDENTITY, .plan = plan_set_replica_identity, .changes_columns = 0,
};

/* alter_column: a new type, new values ("up", "down"), NOT NULL, UNIQUE, a
 * CHECK or a default for a column, without an offline ALTER COLUMN's table
 * rewrite under ACCESS EXCLUSIVE.
 *
 * Expand adds a second column of the new type (mig_shadow_name) with the
 * column's dependents copied to it (plan_carry.c), the tandem rule's
 * trigger between the two (old-shape writes fill it from `up`, new-shape
 * writes the original from `down`, where `down` names the new value by the
 * column's name), NOT NULL as a CHECK NOT VALID and UNIQUE as an index
 * built CONCURRENTLY; the backfill fills it. The old release reads and
 * writes the original, the new release the second column under the
 * column's name. A "check" is validated by complete before its cutover,
 * with traffic flowing (plan_checks.c). The contract drops the original
 * (and the views reading it), gives the second column the column's name
 * and creates the views again; the rollback drops the second column. Key
 * columns are refused. */
#include "op.h"
#include "plan_ctx.h"
#include "migration_dependents.h"

static int plan_alter_column(struct plan_ctx *c, const struct mig_op *op)
{
    if (require_table(c, op, op->table) || require_column(c, op, op->table, op->column) ||
        require_key(c, op, op->table))
        return -1;
    if (key_uses(c, op, op->table, op->column))
        return op_error(c, op, "\"%s\" is part of the key of \"%s\"; altering key columns online is "
                        "not supported", op->column, op->table);
    char shadow[80];
    mig_shadow_name(shadow, sizeof shadow, op->column);
    if (require_no_column(c, op, op->table, shadow))
        return -1;
    if (refuse_uncarried_dependents(c, op, op->table, op->column, 0))
        return -1;
    struct shadow_spec sp = {op->table, op->column, shadow, op->type, op->up, op->down,
                             !op->has_default, op->nullable != 1, 1, 1};
    struct mig_steps deferred = {0};
    if (expand_second_column(c, op, &sp, &deferred) != 0)
        return -1;
    set_new_default(c, op, shadow);
    struct mig_cat_column *oc = mig_catalog_column(table_of(c, op->schema, op->table), op->column);
    if (op->nullable == 0 && !(oc && oc->notnull))
        add_not_null_check(c, op, op->table, shadow);
    if (op->unique == 1) {
        char ix[80];
        object_name(ix, sizeof ix, "uq", op, -1, c->m->name);
        char *cols[1] = {shadow};
        add_index_build(&c->p->expand, op, op->schema, ix,
                        index_sql(op->schema, op->table, ix, 1, NULL, cols, 1, NULL, NULL, NULL));
    }
    /* The deferred steps (SET NOT NULL, index and constraint names) address
     * the shadow column by the name it has until the rename below. */
    struct mig_steps views = {0};
    if (contract_second_column(c, op, op->column, &deferred, &views) != 0)
        return -1;
    add_rename_column(&c->p->contract, op, op->table, shadow, op->column);
    append_steps(&c->p->contract, &views);
    if (op->check)
        add_check_before_cutover(c, op, shadow);
    add_alter(&c->p->rollback, op, op->table, "DROP COLUMN IF EXISTS", shadow, "");
    return 0;
}

const struct mig_op_def op_alter_column = {
    .kind = MIG_ALTER_COLUMN, .plan = plan_alter_column, .changes_columns = 1,
};

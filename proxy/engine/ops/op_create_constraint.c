/* create_constraint: a UNIQUE, CHECK or FOREIGN KEY constraint without a
 * scan under a lock that stops writes. UNIQUE: its index is built
 * CONCURRENTLY at expand and becomes the constraint at contract (ADD
 * CONSTRAINT ... USING INDEX). CHECK and FOREIGN KEY: added NOT VALID at
 * expand, so rows either release writes from then on are checked, and
 * validated after the backfill (SHARE UPDATE EXCLUSIVE: reads and writes
 * go on). The rollback drops it. */
#include "op.h"
#include "migration_plan.h"
#include "plan_ctx.h"

#include <stdlib.h>
#include <string.h>

static int plan_create_constraint(struct plan_ctx *c, const struct mig_op *op)
{
    if (require_table(c, op, op->table))
        return -1;
    if (require_columns(c, op, op->table, op->columns, op->ncolumns))
        return -1;
    if (op->ref_table && require_table(c, op, op->ref_table))
        return -1;
    if (strcmp(op->constraint_type, "unique") == 0) {
        add_index_build(&c->p->expand, op, op->schema, op->name,
                      index_sql(op->schema, op->table, op->name, 1, NULL, op->columns, op->ncolumns,
                                NULL, NULL, NULL));
        struct mig_str s = {0};
        mig_str_add(&s, " UNIQUE USING INDEX ");
        mig_str_ident(&s, op->name);
        char *tail = mig_str_take(&s);
        add_alter(&c->p->contract, op, op->table, "ADD CONSTRAINT", op->name, tail ? tail : "");
        free(tail);
        mig_steps_add(&c->p->rollback, op->index, MIG_STEP_ALONE, drop_index_sql(op->schema, op->name, 1));
        return 0;
    }
    struct mig_str s = {0};
    if (strcmp(op->constraint_type, "check") == 0) {
        mig_str_addf(&s, " CHECK (%s) NOT VALID", op->check);
    } else {
        mig_str_add(&s, " FOREIGN KEY ");
        column_list(&s, op->columns, op->ncolumns);
        mig_str_add(&s, " REFERENCES ");
        mig_str_qname(&s, op->schema, op->ref_table);
        mig_str_add(&s, " ");
        column_list(&s, op->ref_columns, op->nref_columns);
        if (op->on_delete)
            mig_str_addf(&s, " ON DELETE %s", op->on_delete);
        if (op->on_update)
            mig_str_addf(&s, " ON UPDATE %s", op->on_update);
        mig_str_add(&s, " NOT VALID");
    }
    char *tail = mig_str_take(&s);
    add_alter(&c->p->expand, op, op->table, "ADD CONSTRAINT", op->name, tail ? tail : "");
    free(tail);
    add_alter(&c->p->validate, op, op->table, "VALIDATE CONSTRAINT", op->name, "");
    add_alter(&c->p->rollback, op, op->table, "DROP CONSTRAINT IF EXISTS", op->name, "");
    return 0;
}

const struct mig_op_def op_create_constraint = {
    .kind = MIG_CREATE_CONSTRAINT, .plan = plan_create_constraint, .changes_columns = 0,
};

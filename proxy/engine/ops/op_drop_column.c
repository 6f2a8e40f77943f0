/* drop_column: the column goes.
 *
 * Expand takes nothing from the table: the new release's view no longer
 * shows the column, the old release's still does. With a "down", a trigger
 * gives the column down(row) on new-shape inserts and on new-shape updates
 * of what `down` reads, so the old release reads what the new one wrote.
 * The contract runs the offline DROP COLUMN, so what goes with the column
 * offline goes with it online; what an offline DROP COLUMN refuses without
 * CASCADE (a view, a foreign key of another table, a policy, a generated
 * column ...) is refused before any DDL, and so is a key column. */
#include "ops/op.h"
#include "migration_plan.h"
#include "plan_ctx.h"

#include <stdlib.h>

static int plan_drop_column(struct plan_ctx *c, const struct mig_op *op)
{
    if (require_table(c, op, op->table) || require_column(c, op, op->table, op->column))
        return -1;
    if (key_uses(c, op, op->table, op->column))
        return op_error(c, op, "\"%s\" is part of the key of \"%s\"", op->column, op->table);
    if (refuse_uncarried_dependents(c, op, op->table, op->column, 1))
        return -1;
    if (op->down) {
        char fname[80];
        trigger_names(c, op, fname, sizeof fname);
        struct mig_str f = {0};
        mig_str_add(&f, "DECLARE\n");
        const char *exprs[1] = {op->down};
        declare_columns(c, &f, op, op->table, NULL, NULL, exprs, 1);
        declare_shape(&f);
        mig_str_add(&f, "BEGIN\n");
        /* New-shape writers no longer see the column: their inserts, and
         * their updates of what `down` reads, give it down(row), so the old
         * release reads what they wrote. A bypassing writer without the
         * version writes the old shape: what it leaves NULL stays NULL. */
        writer_shape(c, &f, op, op->table, 1, "false", "false");
        mig_str_add(&f, "  IF pgt_new_shape THEN\n");
        direction_runs(c, &f, op, op->table, "    ", op->down, op->column, NULL, NULL);
        mig_str_add(&f, "    IF pgt_run THEN\n      NEW.");
        mig_str_ident(&f, op->column);
        mig_str_addf(&f, " := (%s);\n    END IF;\n  END IF;\n  RETURN NEW;\nEND\n", op->down);
        install_trigger(c, op, op->table, trigger_function(fname, mig_str_take(&f)));
    }
    add_alter(&c->p->contract, op, op->table, "DROP COLUMN", op->column, "");
    return 0;
}

const struct mig_op_def op_drop_column = {
    .kind = MIG_DROP_COLUMN, .plan = plan_drop_column, .changes_columns = 1,
};

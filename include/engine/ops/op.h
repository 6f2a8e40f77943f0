/* The interface every operation of a migration implements, one file each
 * (ops/op_<kind>.c), the way pgroll has one pkg/migrations/op_*.go per
 * operation. A new operation is one file here plus its cases in
 * tests/integration/test_schema_fidelity.py and
 * tests/integration/test_migrate_ops.py; the file format (migration_op_parse.c)
 * reads it and migration_plan.c's table of operations lists it.
 *
 * plan() is called once per operation, in the migration's order. It must:
 *  - validate the operation against the catalog as the earlier operations
 *    leave it (table_of, column_type, require_*: plan_ctx.h), and without a
 *    catalog (c->cat NULL, an offline plan) skip what needs one and write
 *    placeholders;
 *  - tell later operations what it made (remember_column, remember_table);
 *  - add its statements to the phases of c->p: expand, the backfill,
 *    validate, checks, contract, post and rollback (a rollback must be safe
 *    after a partial expand; migration_plan.c reverses the operations'
 *    rollback groups);
 *  - return 0, or -1 with c->err naming operations[i] (op_error).
 * It does no I/O. */
#ifndef PGTANDEM_OP_H
#define PGTANDEM_OP_H

#include "migration.h"

struct plan_ctx;

struct mig_op_def {
    enum mig_op_kind kind;
    int (*plan)(struct plan_ctx *c, const struct mig_op *op);
    int changes_columns;    /* the columns of its table change: the table gets a view per shape */
};

extern const struct mig_op_def op_rename_column, op_add_column, op_alter_column, op_drop_column,
    op_create_table, op_drop_table, op_rename_table, op_create_index, op_drop_index, op_create_constraint,
    op_sql;
extern const struct mig_op_def op_drop_constraint, op_rename_constraint, op_set_replica_identity,
    op_add_enum_value, op_rename_enum_value, op_update_rows, op_delete_rows;

#endif

/* create_table: the table, with its columns' constraints, identity and
 * generated columns, table constraints (a composite primary key,
 * multi-column unique and foreign keys with their actions, checks) and
 * comments, is created at expand by the offline statement itself: a new
 * table has no writers yet, so nothing waits on its locks, and the
 * constraints Postgres names are named as offline. The old release does
 * not know it (its shape has no view of it), the new release finds it
 * through its search path; later operations of the migration build on it
 * (remember_table). The contract has nothing to do; the rollback drops it. */
#include "ops/op.h"
#include "migration_plan.h"
#include "plan_ctx.h"

#include <string.h>

static void column_clauses(struct mig_str *s, const struct mig_op *op, const struct mig_column *col)
{
    if (col->identity)
        mig_str_addf(s, " GENERATED %s AS IDENTITY", !strcmp(col->identity, "always") ? "ALWAYS" : "BY DEFAULT");
    if (col->generated)
        mig_str_addf(s, " GENERATED ALWAYS AS (%s) STORED", col->generated);
    if (col->primary_key == 1)
        mig_str_add(s, " PRIMARY KEY");
    if (col->nullable == 0 && col->primary_key != 1)
        mig_str_add(s, " NOT NULL");
    if (col->unique == 1)
        mig_str_add(s, " UNIQUE");
    if (col->check)
        mig_str_addf(s, " CHECK (%s)", col->check);
    if (col->references)
        references_clause(s, op->schema, col->references);
}

static void table_constraint(struct mig_str *s, const struct mig_op *op, const struct mig_constraint *k)
{
    if (k->name) {
        mig_str_add(s, "CONSTRAINT ");
        mig_str_ident(s, k->name);
        mig_str_add(s, " ");
    }
    if (!strcmp(k->type, "check")) {
        mig_str_addf(s, "CHECK (%s)", k->check);
        return;
    }
    mig_str_add(s, !strcmp(k->type, "primary_key") ? "PRIMARY KEY " : !strcmp(k->type, "unique") ? "UNIQUE "
                                                                                              : "FOREIGN KEY ");
    column_list(s, k->columns, k->ncolumns);
    if (strcmp(k->type, "foreign_key") != 0)
        return;
    mig_str_add(s, " REFERENCES ");
    mig_str_qname(s, op->schema, k->ref_table);
    mig_str_add(s, " ");
    column_list(s, k->ref_columns, k->nref_columns);
    if (k->on_delete)
        mig_str_addf(s, " ON DELETE %s", k->on_delete);
    if (k->on_update)
        mig_str_addf(s, " ON UPDATE %s", k->on_update);
}

/* Postgres names the constraints the statement leaves unnamed; later
 * operations of the migration that name theirs the same way must skip
 * those names, so they are taken here in the order Postgres takes them:
 * the indexes (primary key first), then the checks, then the foreign keys. */
static void take_table_names(struct plan_ctx *c, const struct mig_op *op)
{
    char n[80];
    take_name(c, op->schema, op->table, 1);
    for (size_t i = 0; i < op->ncons; i++)
        if (op->cons[i].name)
            take_name(c, op->schema, op->cons[i].name, strcmp(op->cons[i].type, "check") &&
                      strcmp(op->cons[i].type, "foreign_key"));
    for (size_t i = 0; i < op->ncols; i++)
        if (op->cols[i].primary_key == 1)
            choose_key_name(c, op->schema, op->table, NULL, 0, 1, n, sizeof n);
    for (size_t i = 0; i < op->ncons; i++)
        if (!op->cons[i].name && !strcmp(op->cons[i].type, "primary_key"))
            choose_key_name(c, op->schema, op->table, NULL, 0, 1, n, sizeof n);
    for (size_t i = 0; i < op->ncols; i++)
        if (op->cols[i].unique == 1)
            choose_key_name(c, op->schema, op->table, &op->cols[i].name, 1, 0, n, sizeof n);
    for (size_t i = 0; i < op->ncons; i++)
        if (!op->cons[i].name && !strcmp(op->cons[i].type, "unique"))
            choose_key_name(c, op->schema, op->table, op->cons[i].columns, op->cons[i].ncolumns, 0, n, sizeof n);
    for (size_t i = 0; i < op->ncols; i++)
        if (op->cols[i].check)
            choose_check_name(c, op->schema, op->table, op->cols[i].check, n, sizeof n);
    for (size_t i = 0; i < op->ncons; i++)
        if (!op->cons[i].name && !strcmp(op->cons[i].type, "check"))
            choose_check_name(c, op->schema, op->table, op->cons[i].check, n, sizeof n);
    for (size_t i = 0; i < op->ncols; i++)
        if (op->cols[i].references)
            choose_fkey_name(c, op->schema, op->table, &op->cols[i].name, 1, n, sizeof n);
    for (size_t i = 0; i < op->ncons; i++)
        if (!op->cons[i].name && !strcmp(op->cons[i].type, "foreign_key"))
            choose_fkey_name(c, op->schema, op->table, op->cons[i].columns, op->cons[i].ncolumns, n, sizeof n);
}

static int refuse_constraint_columns(struct plan_ctx *c, const struct mig_op *op)
{
    for (size_t i = 0; i < op->ncons; i++)
        for (size_t k = 0; k < op->cons[i].ncolumns; k++) {
            int found = 0;
            for (size_t j = 0; j < op->ncols && !found; j++)
                found = !strcmp(op->cols[j].name, op->cons[i].columns[k]);
            if (!found)
                return op_error(c, op, "constraints[%zu]: column \"%s\" is not one of the table's columns", i,
                                op->cons[i].columns[k]);
        }
    return 0;
}

static int plan_create_table(struct plan_ctx *c, const struct mig_op *op)
{
    if (c->cat && table_exists(c, op->schema, op->table))
        return op_error(c, op, "table \"%s.%s\" already exists", op->schema, op->table);
    if (refuse_constraint_columns(c, op))
        return -1;
    struct mig_str s = {0};
    mig_str_add(&s, "CREATE TABLE ");
    mig_str_qname(&s, op->schema, op->table);
    mig_str_add(&s, " (\n");
    for (size_t i = 0; i < op->ncols; i++) {
        mig_str_add(&s, "  ");
        column_definition(&s, &op->cols[i], 1);
        column_clauses(&s, op, &op->cols[i]);
        mig_str_add(&s, i + 1 < op->ncols || op->ncons ? ",\n" : "\n");
    }
    for (size_t i = 0; i < op->ncons; i++) {
        mig_str_add(&s, "  ");
        table_constraint(&s, op, &op->cons[i]);
        mig_str_add(&s, i + 1 < op->ncons ? ",\n" : "\n");
    }
    mig_str_add(&s, ")");
    mig_steps_add(&c->p->expand, op->index, MIG_STEP_TXN, mig_str_take(&s));
    for (size_t i = 0; i < op->ncols; i++)
        if (op->cols[i].comment)
            add_comment(c, op, op->table, op->cols[i].name, op->cols[i].comment);
    struct mig_str r = {0};
    mig_str_add(&r, "DROP TABLE IF EXISTS ");
    mig_str_qname(&r, op->schema, op->table);
    mig_steps_add(&c->p->rollback, op->index, MIG_STEP_TXN, mig_str_take(&r));
    remember_table(c, op);
    take_table_names(c, op);
    return 0;
}

const struct mig_op_def op_create_table = {
    .kind = MIG_CREATE_TABLE, .plan = plan_create_table, .changes_columns = 0,
};

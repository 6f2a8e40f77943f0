/* create_index: built CONCURRENTLY at expand (a failed build's INVALID
 * index is dropped before the one retry), so neither release's writes wait
 * for it; both use it. Keys are columns, or SQL with INCLUDE columns,
 * storage parameters and a predicate. On a column an earlier alter_column
 * changes, it is built on the second column so that it survives the
 * contract. The contract has nothing to do; the rollback drops it
 * CONCURRENTLY. On a partitioned table, which Postgres cannot index
 * CONCURRENTLY, it is refused before any DDL. */
#include "op.h"
#include "migration_plan.h"
#include "plan_ctx.h"
#include "migration_dependents.h"

#include <stdlib.h>
#include <string.h>

/* While the migration runs, a column that an earlier alter_column changes
 * lives on in its shadow column, which takes the column's name at contract
 * (the original is dropped). An index this migration creates on the column
 * is built on the shadow so that it survives the contract, as it would
 * after an offline ALTER COLUMN ... TYPE followed by CREATE INDEX. */
static char *column_after_contract(const struct plan_ctx *c, const struct mig_op *op, const char *col)
{
    for (size_t i = 0; i < (size_t)op->index && i < c->m->nops; i++) {
        const struct mig_op *o = &c->m->ops[i];
        if (o->kind == MIG_ALTER_COLUMN && !alter_in_place(c, o) && !strcmp(o->schema, op->schema) &&
            !strcmp(o->table, op->table) &&
            !strcmp(o->column, col)) {
            char shadow[80];
            mig_shadow_name(shadow, sizeof shadow, col);
            return strdup(shadow);
        }
    }
    return strdup(col);
}

/* CREATE INDEX CONCURRENTLY with keys written as SQL (checked by the parser
 * to be index keys only), INCLUDE columns and storage parameters. */
char *mig_index_sql_keys(const struct mig_op *op, const char *schema, const char *table, char *const *cols,
                         int concurrently)
{
    struct mig_str s = {0};
    mig_str_addf(&s, "CREATE %sINDEX %s", op->unique == 1 ? "UNIQUE " : "", concurrently ? "CONCURRENTLY " : "");
    mig_str_ident(&s, op->name);
    mig_str_add(&s, " ON ");
    mig_str_qname(&s, schema, table);
    mig_str_add(&s, " USING ");
    mig_str_ident(&s, op->method ? op->method : "btree");
    mig_str_add(&s, " (");
    for (size_t i = 0; i < op->ncolumns + op->nkeys; i++) {
        if (i)
            mig_str_add(&s, ", ");
        if (i < op->ncolumns)
            mig_str_ident(&s, cols[i]);
        else
            mig_str_add(&s, op->keys[i - op->ncolumns]);
    }
    mig_str_add(&s, ")");
    if (op->ninclude) {
        mig_str_add(&s, " INCLUDE ");
        column_list(&s, op->include, op->ninclude);
    }
    if (op->storage_parameters)
        mig_str_addf(&s, " WITH (%s)", op->storage_parameters);
    if (op->where)
        mig_str_addf(&s, " WHERE (%s)", op->where);
    return mig_str_take(&s);
}

/* Keys written as SQL name columns by their names of today; a column this
 * migration retypes earlier is another column until the contract. */
static int keys_meet_retyped_column(const struct plan_ctx *c, const struct mig_op *op)
{
    for (size_t i = 0; op->nkeys && i < (size_t)op->index && i < c->m->nops; i++) {
        const struct mig_op *o = &c->m->ops[i];
        int retypes = (o->kind == MIG_ALTER_COLUMN && !alter_in_place(c, o)) || (o->kind == MIG_RENAME_COLUMN && o->type);
        if (retypes && !strcmp(o->schema, op->schema) && !strcmp(o->table, op->table))
            return 1;
    }
    return 0;
}

/* CREATE INDEX CONCURRENTLY on a partitioned table fails ("cannot create
 * index on partitioned table concurrently"), and a plain CREATE INDEX
 * there locks out every partition's writes while each is built. The
 * online way (the parent's index ON ONLY, each partition's CONCURRENTLY,
 * then ATTACH PARTITION) is not built yet. */
static int refuse_partitioned(struct plan_ctx *c, const struct mig_op *op)
{
    const struct mig_cat_table *t = table_of(c, op->schema, op->table);
    if (!t || t->relkind != 'p')
        return 0;
    return op_error(c, op, "table \"%s.%s\" is partitioned, and Postgres cannot build index \"%s\" on a "
                    "partitioned table CONCURRENTLY (cannot create index on partitioned table concurrently), as "
                    "create_index does at expand; pgtandem does not build a partitioned table's index yet. "
                    "Build it the online way instead: create_index on each partition (built CONCURRENTLY), then "
                    "an \"sql\" operation that creates the parent's index ON ONLY \"%s\" and attaches each "
                    "partition's (ALTER INDEX ... ATTACH PARTITION)", op->schema, op->table, op->name, op->table);
}

static int plan_create_index(struct plan_ctx *c, const struct mig_op *op)
{
    if (require_table(c, op, op->table) || refuse_partitioned(c, op))
        return -1;
    if (require_columns(c, op, op->table, op->columns, op->ncolumns) ||
        require_columns(c, op, op->table, op->include, op->ninclude))
        return -1;
    if (keys_meet_retyped_column(c, op))
        return op_error(c, op, "index \"%s\" has keys written as SQL on table \"%s\", whose columns an earlier "
                        "operation changes; create it in the next migration", op->name, op->table);
    char **cols = calloc(op->ncolumns ? op->ncolumns : 1, sizeof *cols);
    if (!cols)
        return op_error(c, op, "out of memory");
    for (size_t i = 0; i < op->ncolumns; i++)
        if (!(cols[i] = column_after_contract(c, op, op->columns[i])))
            c->p->expand.oom = 1;
    if (!c->p->expand.oom)
        add_index_build(&c->p->expand, op, op->schema, op->name,
                        mig_index_sql_keys(op, op->schema, op->table, cols, 1));
    for (size_t i = 0; i < op->ncolumns; i++)
        free(cols[i]);
    free(cols);
    mig_steps_add(&c->p->rollback, op->index, MIG_STEP_ALONE, drop_index_sql(op->schema, op->name, 1));
    return 0;
}

const struct mig_op_def op_create_index = {
    .kind = MIG_CREATE_INDEX, .plan = plan_create_index, .changes_columns = 0,
};

/* create_index: built CONCURRENTLY at expand (a failed build's INVALID
 * index is dropped before the one retry), so neither release's writes wait
 * for it; both use it. Keys are columns, or SQL with INCLUDE columns,
 * storage parameters and a predicate. On a column an earlier alter_column
 * changes, it is built on the second column so that it survives the
 * contract. The contract has nothing to do; the rollback drops it
 * CONCURRENTLY. On a partitioned table, which Postgres cannot index
 * CONCURRENTLY, the table's index is made ON ONLY the table and each
 * partition's is built CONCURRENTLY and attached to it
 * (plan_partitions.c); a unique one must include the partition key. The
 * partitions' indexes take the names Postgres gives them offline, those an
 * earlier drop_index frees included (under temporary names until then).
 *
 * An index of the same name that an earlier drop_index drops (how ORMs
 * change an index: DROP INDEX x; CREATE INDEX x ...) is there until after
 * the contract, so the new one is built under a temporary name
 * (pgtandem_ix<i>_<migration>) and renamed once the old one is gone, the
 * step after the drop_index's (ALTER INDEX ... RENAME: SHARE UPDATE
 * EXCLUSIVE, a catalog change). An index of that name that nothing drops
 * is refused before any DDL (42P07): the rollback drops the index it built
 * by name, and must never find the one that was there. */
#include "ops/op.h"
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
    char out[80];
    column_until_contract(c, op, op->schema, op->table, col, out, sizeof out);
    return strdup(out);
}

/* The index's definition from USING on: keys written as SQL (checked by
 * the parser to be index keys only), INCLUDE columns, storage parameters
 * and a predicate. */
static void index_definition(struct mig_str *s, const struct mig_op *op, char *const *cols)
{
    mig_str_add(s, "USING ");
    mig_str_ident(s, op->method ? op->method : "btree");
    mig_str_add(s, " (");
    for (size_t i = 0; i < op->ncolumns + op->nkeys; i++) {
        if (i)
            mig_str_add(s, ", ");
        if (i < op->ncolumns)
            mig_str_ident(s, cols[i]);
        else
            mig_str_add(s, op->keys[i - op->ncolumns]);
    }
    mig_str_add(s, ")");
    if (op->ninclude) {
        mig_str_add(s, " INCLUDE ");
        column_list(s, op->include, op->ninclude);
    }
    if (op->storage_parameters)
        mig_str_addf(s, " WITH (%s)", op->storage_parameters);
    if (op->where)
        mig_str_addf(s, " WHERE (%s)", op->where);
}

char *mig_index_sql_keys(const struct mig_op *op, const char *schema, const char *table, char *const *cols,
                         int concurrently)
{
    struct mig_str s = {0};
    mig_str_addf(&s, "CREATE %sINDEX %s", op->unique == 1 ? "UNIQUE " : "", concurrently ? "CONCURRENTLY " : "");
    mig_str_ident(&s, op->name);
    mig_str_add(&s, " ON ");
    mig_str_qname(&s, schema, table);
    mig_str_add(&s, " ");
    index_definition(&s, op, cols);
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

/* A partitioned table's index: ON ONLY the table, each partition's built
 * CONCURRENTLY and attached (plan_partitions.c); its definition from held
 * (op read over second columns), op itself for the plan's bookkeeping
 * (held is a copy, not one of the migration's operations). */
static int build_on_partitioned(struct plan_ctx *c, const struct mig_op *op, const struct mig_op *held,
                                const struct mig_cat_table *t, char *const *cols, const char *built_as)
{
    struct mig_str s = {0};
    index_definition(&s, held, cols);
    char *definition = mig_str_take(&s);
    if (!definition)
        return op_error(c, op, "out of memory");
    int rc = build_partitioned_index(c, op, t, op->unique == 1, definition, built_as);
    free(definition);
    return rc;
}

/* The CREATE INDEX CONCURRENTLY of op under name ix. */
static char *index_sql_named(const struct mig_op *op, const char *ix, char *const *cols)
{
    struct mig_op named = *op;
    named.name = (char *)ix;
    return mig_index_sql_keys(&named, op->schema, op->table, cols, 1);
}

/* ALTER INDEX ix RENAME TO name, after the earlier drop_index's step. IF
 * EXISTS, as the steps after the contract drop: the contract may have
 * taken the index away with its table or column (73143-117: DROP INDEX x,
 * CREATE INDEX x, then DROP TABLE), and a step run again after a crash
 * finds it renamed already. */
static void rename_after_contract(struct plan_ctx *c, const struct mig_op *op, const char *ix)
{
    mig_steps_add(&c->p->post, op->index, MIG_STEP_TXN, rename_index_sql(op->schema, ix, op->name));
}

static int plan_index_held(struct plan_ctx *c, const struct mig_op *held, const struct mig_op *op);

static int plan_create_index(struct plan_ctx *c, const struct mig_op *op)
{
    if (require_table(c, op, op->table))
        return -1;
    if (require_columns(c, op, op->table, op->columns, op->ncolumns) ||
        require_columns(c, op, op->table, op->include, op->ninclude))
        return -1;
    if (keys_meet_retyped_column(c, op))
        return op_error(c, op, "index \"%s\" has keys written as SQL on table \"%s\", whose columns an earlier "
                        "operation changes; create it in the next migration", op->name, op->table);
    /* a column retyped earlier: the predicate and INCLUDE read its second
     * column, which takes the column's name at the contract */
    struct mig_op held = *op;
    char col[80] = "?";
    held.where = op->where ? expr_on_second_columns(c, op, op->where) : NULL;
    if (op->where && !held.where && !expr_reads_retyped(c, op, op->where, col, sizeof col))
        held.where = strdup(op->where);     /* reads no retyped column: as written */
    if (op->where && !held.where)
        return op_error(c, op, "index \"%s\" reads column \"%s\" of \"%s\" in its predicate, and an earlier operation "
                        "of this migration changes that column's type, in a way that cannot be read over its second "
                        "column (where its new values are until the contract): create it in the next migration",
                        op->name, col, op->table);
    held.include = op->ninclude ? calloc(op->ninclude, sizeof *held.include) : NULL;
    for (size_t i = 0; held.include && i < op->ninclude; i++)
        if (!(held.include[i] = column_after_contract(c, op, op->include[i])))
            c->p->expand.oom = 1;
    if (op->ninclude && !held.include)
        c->p->expand.oom = 1;
    int rc = plan_index_held(c, &held, op);
    for (size_t i = 0; held.include && i < op->ninclude; i++)
        free(held.include[i]);
    free(held.include);
    free(held.where);
    return rc;
}

/* op (held: its predicate and INCLUDE read over second columns) planned. */
static int plan_index_held(struct plan_ctx *c, const struct mig_op *held, const struct mig_op *op)
{
    char **cols = calloc(op->ncolumns ? op->ncolumns : 1, sizeof *cols);
    if (!cols)
        return op_error(c, op, "out of memory");
    for (size_t i = 0; i < op->ncolumns; i++)
        if (!(cols[i] = column_after_contract(c, op, op->columns[i])))
            c->p->expand.oom = 1;
    const struct mig_cat_table *parted = partitioned_table(c, op->schema, op->table);
    int later = index_name_at_expand(c, op, op->name);
    int rc = later < 0 ? -1 : 0;
    char ix[80];
    if (later > 0)
        object_name(ix, sizeof ix, "ix", op, -1, c->m->name);
    else
        snprintf(ix, sizeof ix, "%s", op->name);
    if (rc == 0 && parted && !c->p->expand.oom) {
        rc = build_on_partitioned(c, op, held, parted, cols, ix);
    } else if (rc == 0 && !c->p->expand.oom) {
        add_index_build(&c->p->expand, op, op->schema, ix, index_sql_named(held, ix, cols));
        mig_steps_add(&c->p->rollback, op->index, MIG_STEP_ALONE, drop_index_sql(op->schema, ix, 1));
        if (later)
            rename_after_contract(c, op, ix);
    }
    for (size_t i = 0; i < op->ncolumns; i++)
        free(cols[i]);
    free(cols);
    return rc;
}

const struct mig_op_def op_create_index = {
    .kind = MIG_CREATE_INDEX, .plan = plan_create_index, .changes_columns = 0,
};

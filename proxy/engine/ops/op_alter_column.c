/* alter_column: a new type, new values ("up", "down"), NOT NULL, UNIQUE, a
 * CHECK or a default for a column, without an offline ALTER COLUMN's table
 * rewrite under ACCESS EXCLUSIVE.
 *
 * In place, when the values do not change (no up, down or check) and any
 * new type is one Postgres takes in the catalog alone (engine.c's probe: a
 * longer varchar, varchar to text, a wider numeric) on a column only
 * simple indexes depend on: no second column, nothing copied. Expand adds
 * NOT NULL as a CHECK NOT VALID (validated after, SET NOT NULL at
 * contract) and UNIQUE as an index built CONCURRENTLY that the contract
 * makes the UNIQUE constraint offline ADD UNIQUE would name (t_c_key);
 * the new shape's view gets the new default while the table keeps the old
 * release's. The
 * contract changes the type, the default or drops NOT NULL in the catalog,
 * so until complete the new release writes within the old type and NOT
 * NULL.
 *
 * Otherwise expand adds a second column of the new type (mig_shadow_name)
 * with the column's dependents copied to it (plan_carry.c), the tandem
 * rule's trigger between the two (old-shape writes fill it from `up`,
 * new-shape writes the original from `down`, where `down` names the new
 * value by the column's name; without up/down, casts), NOT NULL as a CHECK
 * NOT VALID and UNIQUE as an index built CONCURRENTLY; the backfill fills
 * it. The old release reads and writes the original, the new release the
 * second column under the column's name. A "check" is validated by
 * complete before its cutover, with traffic flowing (plan_checks.c). The
 * contract drops the original (and the views reading it), gives the second
 * column the column's name and creates the views again; the rollback drops
 * the second column. Key columns are refused.
 *
 * "recreate" (a column dropped and added again under its name, DROP COLUMN
 * c, ADD COLUMN c): the second column is a new column, so nothing of the
 * original is carried to it (no index, constraint, comment, privilege,
 * statistics target or default); they stay on the original for the old
 * release and go with it at the contract's DROP COLUMN, as offline. What
 * that DROP COLUMN would refuse is refused before any DDL. */
#include "ops/op.h"
#include "migration_plan.h"
#include "plan_ctx.h"
#include "migration_names.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>


/* The column's name in the new shape's view: a later rename_column of it
 * followed; NULL when a later drop_column takes it out of that view. A
 * default set and then a rename (or a drop) in one file is set on the
 * view's column as the file leaves it. */
static const char *shape_name(const struct plan_ctx *c, const struct mig_op *op)
{
    const char *name = op->column;
    int after = 0;
    for (size_t i = 0; i < c->m->nops; i++) {
        const struct mig_op *o = &c->m->ops[i];
        if (o == op) {
            after = 1;
            continue;
        }
        if (!after || !o->table || strcmp(o->schema, op->schema) || strcmp(o->table, op->table))
            continue;
        if (o->kind == MIG_RENAME_COLUMN && o->from && !strcmp(o->from, name))
            name = o->to;
        else if (o->kind == MIG_DROP_COLUMN && o->column && !strcmp(o->column, name))
            return NULL;
    }
    return name;
}

/* Whether the column is NOT NULL when op runs: as the catalog has it,
 * then as each earlier alter_column of this migration left it (a SET NOT
 * NULL, then a DROP NOT NULL of it further down, in one file). */
static int not_null_before(const struct plan_ctx *c, const struct mig_op *op, const struct mig_cat_column *oc)
{
    int not_null = oc && oc->notnull;
    for (int i = 0; i < op->index && (size_t)i < c->m->nops; i++) {
        const struct mig_op *o = &c->m->ops[i];
        if (o->kind == MIG_ALTER_COLUMN && o->nullable != -1 && !strcmp(o->schema, op->schema) &&
            !strcmp(o->table, op->table) && !strcmp(o->column, op->column))
            not_null = o->nullable == 0;
    }
    return not_null;
}

static int plan_in_place(struct plan_ctx *c, const struct mig_op *op)
{
    const struct mig_cat_column *oc = mig_catalog_column(table_of(c, op->schema, op->table), op->column);
    const char *now = column_type(c, op->schema, op->table, op->column);
    if (op->type && !(now && !strcmp(now, op->type))) {
        struct mig_str t = {0};
        mig_str_addf(&t, " TYPE %s", op->type);
        char *tail = mig_str_take(&t);
        add_alter(&c->p->contract, op, op->table, "ALTER COLUMN", op->column, tail ? tail : "");
        free(tail);
        carried(c, op, "type of \"%s\": changed in the catalog at contract (Postgres rewrites nothing), to %s",
                op->column, op->type);
    }
    int not_null = not_null_before(c, op, oc);
    if (op->nullable == 0 && !not_null) {
        add_not_null_check(c, op, op->table, op->column);
        char cname[80];
        object_name(cname, sizeof cname, "nn", op, -1, c->m->name);
        add_alter(&c->p->rollback, op, op->table, "DROP CONSTRAINT IF EXISTS", cname, "");
    }
    if (op->nullable == 1 && (!oc || not_null))
        add_alter(&c->p->contract, op, op->table, "ALTER COLUMN", op->column, " DROP NOT NULL");
    if (op->has_default) {
        const char *in_view = shape_name(c, op);
        if (in_view)
            add_shape_default(c, op, op->table, in_view, op->default_expr);
        add_set_default(&c->p->contract, op, op->table, op->column, op->default_expr);
    }
    if (op->unique == 1) {
        char ix[80];
        object_name(ix, sizeof ix, "uq", op, -1, c->m->name);
        char *cols[1] = {op->column};
        add_index_build(&c->p->expand, op, op->schema, ix,
                        index_sql(op->schema, op->table, ix, 1, NULL, cols, 1, NULL, NULL, NULL));
        mig_steps_add(&c->p->rollback, op->index, MIG_STEP_ALONE, drop_index_sql(op->schema, ix, 1));
        char key[80];
        choose_key_name(c, op->schema, op->table, cols, 1, 0, key, sizeof key);
        add_unique_using_index(c, op, op->table, key, ix);
    }
    return 0;
}

/* `down` is the NULL constant. */
static int down_is_null(const char *down)
{
    while (down && (*down == ' ' || *down == '(' || *down == '\t'))
        down++;
    return down && !strncasecmp(down, "NULL", 4) && strspn(down + 4, " )\t\n") == strlen(down + 4);
}

/* The earlier alter_column of the migration on the same column, whose
 * second column has the name this one needs; NULL when none. */
static const struct mig_op *earlier_second_column(const struct plan_ctx *c, const struct mig_op *op)
{
    for (int i = 0; i < op->index; i++) {
        const struct mig_op *o = &c->m->ops[i];
        if (o->kind == MIG_ALTER_COLUMN && !strcmp(o->schema, op->schema) && !strcmp(o->table, op->table) &&
            !strcmp(o->column, op->column))
            return o;
    }
    return NULL;
}

static int plan_alter_column(struct plan_ctx *c, const struct mig_op *op)
{
    if (require_table(c, op, op->table) || require_column(c, op, op->table, op->column))
        return -1;
    const struct mig_cat_column *old = mig_catalog_column(table_of(c, op->schema, op->table), op->column);
    if (old && old->notnull && down_is_null(op->down))
        return op_error(c, op, "\"down\" gives the old release's column \"%s\" NULL, but it is NOT NULL: every row "
                        "the new release writes would be refused. Give \"down\" a value (in SQL, \"-- pgtandem:down "
                        "EXPR\" above the statement), or drop the NOT NULL in a migration before this one",
                        op->column);
    if (alter_in_place(c, op))
        return plan_in_place(c, op);
    if (require_key(c, op, op->table))
        return -1;
    char shadow[80];
    mig_shadow_name(shadow, sizeof shadow, op->column);
    const struct mig_op *first = column_type(c, op->schema, op->table, shadow) ? earlier_second_column(c, op) : NULL;
    if (first)
        return op_error(c, op, "column \"%s\" of \"%s\" is changed by operations[%d].alter_column above too, which "
                        "carries it to a second column until the contract: two changes of its type or values in "
                        "one migration cannot both be carried. Write them as one change (one ALTER COLUMN ... TYPE "
                        "with one USING), or put this one in a migration after this one", op->column, op->table,
                        first->index);
    if (require_no_column(c, op, op->table, shadow))
        return -1;
    if (op->recreate && key_uses(c, op, op->table, op->column))
        return op_error(c, op, "\"%s\" is part of the key of \"%s\", which the backfill walks by: it cannot be "
                        "dropped and added again online; add a column under a new name instead", op->column,
                        op->table);
    /* A column dropped and added again: the old one's dependents stay with
     * it for the old release and go with it at the contract's DROP COLUMN,
     * as offline; what that DROP COLUMN would refuse is refused now. */
    if (refuse_uncarried_dependents(c, op, op->table, op->column, op->recreate))
        return -1;
    struct shadow_spec sp = {op->table, op->column, shadow, op->type, op->up, op->down,
                             !op->has_default && !op->recreate, op->nullable != 1 && !op->recreate,
                             !op->recreate, !op->recreate, 0};
    struct mig_steps deferred = {0};
    if (expand_second_column(c, op, &sp, &deferred) != 0)
        return -1;
    if (op->recreate)
        carried(c, op, "indexes, constraints and properties of \"%s\": left on the old column for the old "
                "release, dropped with it at contract, as an offline DROP COLUMN drops them%s", op->column, "");
    set_new_default(c, op, shadow);
    struct mig_cat_column *oc = mig_catalog_column(table_of(c, op->schema, op->table), op->column);
    if (op->nullable == 0 && (op->recreate || !(oc && oc->notnull)))
        add_not_null_check(c, op, op->table, shadow);
    char uq[80] = "", key[80] = "";
    if (op->unique == 1) {
        object_name(uq, sizeof uq, "uq", op, -1, c->m->name);
        char *cols[1] = {shadow}, *final[1] = {op->column};
        add_index_build(&c->p->expand, op, op->schema, uq,
                        index_sql(op->schema, op->table, uq, 1, NULL, cols, 1, NULL, NULL, NULL));
        choose_key_name(c, op->schema, op->table, final, 1, 0, key, sizeof key);
    }
    /* The deferred steps (SET NOT NULL, index and constraint names) address
     * the shadow column by the name it has until the rename below. */
    struct mig_steps views = {0};
    if (contract_second_column(c, op, op->column, &deferred, &views) != 0)
        return -1;
    add_rename_column(&c->p->contract, op, op->table, shadow, op->column);
    append_steps(&c->p->contract, &views);
    if (uq[0])
        add_unique_using_index(c, op, op->table, key, uq);
    if (op->check)
        add_check_before_cutover(c, op, shadow);
    add_alter(&c->p->rollback, op, op->table, "DROP COLUMN IF EXISTS", shadow, "");
    return 0;
}

const struct mig_op_def op_alter_column = {
    .kind = MIG_ALTER_COLUMN, .plan = plan_alter_column, .changes_columns = 1,
};

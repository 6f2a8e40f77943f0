/* A migration built on one in flight that renames, retypes or drops
 * columns of a table it changes too (migration_catalog.h, shape_of,
 * shape_reads): what it may do there and how its views show that table.
 *
 * A column the one below renames plainly (the values as they are: its
 * contract only renames it in the catalog) may be named under its new
 * name: the rename is brought forward to this migration's expand, the
 * views of both shapes below follow it (Postgres binds them to the
 * column, not its name) and that one's contract finds it done; this
 * one's rollback renames it back unless that one has completed. Not when
 * a trigger below reads the column by its old name, nor when an index, a
 * constraint or another view reads it (migration_catalog_shape.c).
 *
 * Its new shape is the one below's with its own changes, and its old
 * shape the one below's new shape, so both views read each column through
 * the name the one below shows (`name AS full_name`) and leave out what it
 * hides. It may add, rename, retype and drop columns there, but not name a
 * column the one below changes: its triggers and backfill then read only
 * columns that keep their names when that one completes (its contract
 * renames and drops in the catalog; a function body names columns as
 * text). It may change a column the one below names (its `down` reads
 * first and last, the new one retypes first): its trigger for that column
 * then runs twice, its `down` before the triggers below and its `up`
 * after them (mig_catalog_reads_column, plan_trigger.c), so a write of its own
 * release reaches the `down`s below filled, and one of an older release
 * reaches its `up` after the `up`s below. */
#include "migration_plan.h"
#include "migration_flight.h"
#include "plan_ctx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct mig_cat_shape_col *shape_col(const struct mig_cat_table *t, const char *phys)
{
    for (size_t i = 0; i < t->nshape; i++)
        if (!strcmp(t->shape[i].phys, phys))
            return &t->shape[i];
    return NULL;
}

const char *shape_shows(const struct mig_cat_table *t, const char *phys)
{
    if (!t || !t->shape_of)
        return phys;
    const struct mig_cat_shape_col *s = shape_col(t, phys);
    return s ? s->shown : NULL;
}

int shape_changes(const struct mig_cat_table *t, const char *name)
{
    if (!t || !t->shape_of)
        return 0;
    for (size_t i = 0; i < t->nshape; i++)
        if (!strcmp(t->shape[i].shown, name) && strcmp(t->shape[i].phys, name))
            return 1;
    if (!mig_catalog_column(t, name))
        return 0;
    const char *shown = shape_shows(t, name);
    return !shown || strcmp(shown, name);
}

int shape_is_table(const struct mig_cat_table *t)
{
    if (!t || !t->shape_of)
        return 1;
    for (size_t i = 0; i < t->nshape; i++)
        if (strcmp(t->shape[i].phys, t->shape[i].shown))
            return 0;
    for (size_t i = 0; i < t->ncols; i++)
        if (!shape_col(t, t->cols[i].name))
            return 0;
    return 1;
}

/* The name this migration's plain rename gives a column the migration in
 * flight below shows under `shown` (plan_on_shape.c), or NULL. */
const char *renamed_plainly_to(const struct plan_ctx *c, const char *schema, const char *table,
                                      const char *shown)
{
    for (size_t i = 0; i < c->m->nops; i++) {
        const struct mig_op *op = &c->m->ops[i];
        if (mig_op_renames_plainly(op) && op->table && !strcmp(op->schema, schema) && !strcmp(op->table, table) &&
            !strcmp(op->from, shown))
            return op->to;
    }
    return NULL;
}

/* A plain rename (no type, up, down, copy or default) of a column the
 * shape below retypes into a second column (it shows that one under the
 * name of the column it hides) and that no other operation of this
 * migration names: it acts only in this migration's contract, which runs
 * after the one below has completed, when the second column wears the
 * column's name. Its views show the second column under the new name
 * (migration_plan.c, renamed_plainly_to); no trigger or backfill of its
 * own reads the column. A column the one below renames is not one of
 * these: its new name is no column of the table until then. */
static int renames_in_contract_only(const struct plan_ctx *c, const struct mig_op *op,
                                    const struct mig_cat_table *t, const char *name)
{
    if (!mig_op_renames_plainly(op) || strcmp(op->from, name))
        return 0;
    int shown = 0;
    for (size_t i = 0; i < t->nshape; i++)
        shown |= !strcmp(t->shape[i].shown, name) && strcmp(t->shape[i].phys, name);
    return shown && mig_catalog_column(t, name) && !mig_rename_named_elsewhere(c->m, op);
}

/* The first column of an operation the shape keeps it from naming, and
 * why. */
struct verdict {
    const struct mig_cat_table *t;
    char name[80];
    enum mig_clash why;
};

static void judge(const char *name, int changes, void *arg)
{
    (void)changes;
    struct verdict *v = arg;
    if (v->why == MIG_CLASH_NONE &&
        (v->why = mig_column_clash(name, shape_changes(v->t, name), !shape_is_table(v->t))) != MIG_CLASH_NONE)
        snprintf(v->name, sizeof v->name, "%s", name);
}

void plan_forward_renames(struct plan_ctx *c, struct mig_steps *front)
{
    for (size_t i = 0; c->cat && i < c->cat->n; i++) {
        const struct mig_cat_table *t = &c->cat->tables[i];
        for (size_t k = 0; k < t->nforward; k++) {
            const struct mig_cat_forward *f = &t->forward[k];
            mig_steps_add(front, -1, MIG_STEP_TXN, rename_column_sql(t->schema, t->name, f->from, f->to));
            mig_steps_add(&c->p->rollback, -1, MIG_STEP_TXN,
                          rename_back_unless_completed(t->schema, t->name, f->from, f->to, f->by));
        }
    }
}

int plan_check_shapes(struct plan_ctx *c)
{
    for (size_t i = 0; i < c->m->nops; i++) {
        const struct mig_op *op = &c->m->ops[i];
        const struct mig_cat_table *t = op->table ? mig_catalog_table(c->cat, op->schema, op->table) : NULL;
        if (!t || (shape_is_table(t) && !t->nshape_reads))
            continue;
        const char *below = t->reads_of ? t->reads_of : t->shape_of; /* the one that changes it */
        if (t->retyped_in_place)
            return op_error(c, op, "migration %s, in flight below %s, retypes column \"%s\" of \"%s\" without up or"
                            " down, which its complete may do in place, and Postgres retypes no column a view reads"
                            " (the views of %s read every column of its shape): complete %s first, or start the two"
                            " together as one", t->reads_of, c->m->name, t->retyped_in_place, op->table, c->m->name,
                            t->reads_of);
        if (!mig_op_kind_on_columns(op->kind))
            return op_error(c, op, "migration %s, in flight below %s, changes \"%s\": a migration built on it may only"
                            " add, rename, retype or drop columns of that table (add_column, create_index,"
                            " rename_column, alter_column, drop_column) until %s completes; complete %s first, or"
                            " start the two together as one", below, c->m->name, op->table, below, below);
        struct verdict v = {.t = t};
        mig_op_columns(op, judge, &v);
        if (v.why == MIG_CLASH_NAMES_CHANGED && renames_in_contract_only(c, op, t, v.name))
            continue;
        if (v.why == MIG_CLASH_READS_ROW)
            return op_error(c, op, "reads a whole row of \"%s\" (or an expression the parser does not take), whose"
                            " shape migration %s, in flight below %s, changes: name the columns it reads, or"
                            " complete %s first", op->table, below, c->m->name, below);
        if (v.why == MIG_CLASH_NAMES_CHANGED && t->not_forward)
            return op_error(c, op, "names column \"%s\" of \"%s\", which migration %s, in flight below %s, renames,"
                            " and its rename cannot move to this migration's expand: %s; complete %s first, or"
                            " start the two together as one", v.name, op->table, below, c->m->name, t->not_forward,
                            below);
        if (v.why == MIG_CLASH_NAMES_CHANGED)
            return op_error(c, op, "names column \"%s\" of \"%s\", which migration %s, in flight below %s, renames,"
                            " retypes or drops: a migration built on it may not name that column until %s"
                            " completes (its triggers would read a name %s's contract changes; only the new name of"
                            " a plain rename may be named); complete %s first, or start the two together as one",
                            v.name, op->table, below, c->m->name, below, below, below);
    }
    return 0;
}

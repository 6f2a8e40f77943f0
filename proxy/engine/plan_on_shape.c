/* A migration built on one in flight that renames, retypes or drops a
 * column of a table it changes too (migration_catalog.h, shape_of): what
 * it may do there and how its views show that table.
 *
 * Its new shape is the one below's with its own additions, and its old
 * shape the one below's new shape, so both views read each column through
 * the name the one below shows (`name AS full_name`) and leave out what it
 * hides. It may only add there (add_column, create_index) and may not name
 * a column the one below changes: its triggers and backfill then read only
 * columns that keep their names when that one completes (its contract
 * renames and drops in the catalog; a function body names columns as
 * text), and its `up` runs after the one below's on an old release's
 * write, with no `down` of its own to order against theirs. */
#include "migration_plan.h"
#include "plan_ctx.h"
#include "sql_fragment.h"

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
    for (size_t i = 0; i < t->ncols; i++)
        if (!strcmp(t->cols[i].name, name)) {
            const char *shown = shape_shows(t, name);
            return !shown || strcmp(shown, name);
        }
    return 0;
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

/* The first name the expression reads that the shape changes, or "*"
 * when it reads the whole row (`*`, or the table's name) or cannot be
 * read. */
static const char *reads_changed(const struct mig_cat_table *t, const char *expr, char *buf, size_t cap)
{
    if (!expr)
        return NULL;
    char **names = NULL;
    size_t n = 0;
    int star = 0;
    if (sql_fragment_columns(expr, &names, &n, &star) != SQL_FRAGMENT_OK || star) {
        sql_fragment_free_names(names, n);
        return "*";
    }
    const char *hit = NULL;
    for (size_t i = 0; i < n && !hit; i++)
        if (!strcmp(names[i], t->name) && !mig_catalog_column(t, names[i]))
            hit = "*"; /* the row by its table's name (the trigger's ALIAS FOR NEW) */
        else if (shape_changes(t, names[i])) {
            snprintf(buf, cap, "%s", names[i]);
            hit = buf;
        }
    sql_fragment_free_names(names, n);
    return hit;
}

static const char *names_changed(const struct mig_cat_table *t, char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (shape_changes(t, names[i]))
            return names[i];
    return NULL;
}

/* The column of op its shape's table changes, or NULL. */
static const char *op_names_changed(const struct mig_cat_table *t, const struct mig_op *op, char *buf, size_t cap)
{
    const char *hit = NULL;
    if (op->kind == MIG_ADD_COLUMN) {
        hit = op->col.name && shape_changes(t, op->col.name) ? op->col.name : NULL;
        const char *exprs[] = {op->up, op->col.default_expr, op->col.check};
        for (size_t i = 0; !hit && i < sizeof exprs / sizeof exprs[0]; i++)
            hit = reads_changed(t, exprs[i], buf, cap);
        return hit;
    }
    hit = names_changed(t, op->columns, op->ncolumns);
    if (!hit)
        hit = names_changed(t, op->include, op->ninclude);
    for (size_t i = 0; !hit && i < op->nkeys; i++)
        hit = reads_changed(t, op->keys[i], buf, cap);
    return hit ? hit : reads_changed(t, op->where, buf, cap);
}

int plan_check_shapes(struct plan_ctx *c)
{
    for (size_t i = 0; i < c->m->nops; i++) {
        const struct mig_op *op = &c->m->ops[i];
        const struct mig_cat_table *t = op->table ? mig_catalog_table(c->cat, op->schema, op->table) : NULL;
        if (!t || shape_is_table(t))
            continue;
        if (op->kind != MIG_ADD_COLUMN && op->kind != MIG_CREATE_INDEX)
            return op_error(c, op, "migration %s, in flight below %s, renames, retypes or drops a column of \"%s\":"
                            " a migration built on it may only add to that table (add_column, create_index) until"
                            " %s completes; complete %s first, or start the two together as one", t->shape_of,
                            c->m->name, op->table, t->shape_of, t->shape_of);
        char buf[128];
        const char *hit = op_names_changed(t, op, buf, sizeof buf);
        if (hit && !strcmp(hit, "*"))
            return op_error(c, op, "reads a whole row of \"%s\" (or an expression the parser does not take), whose"
                            " shape migration %s, in flight below %s, changes: name the columns it reads, or"
                            " complete %s first", op->table, t->shape_of, c->m->name, t->shape_of);
        if (hit)
            return op_error(c, op, "names column \"%s\" of \"%s\", which migration %s, in flight below %s, renames,"
                            " retypes or drops: a migration built on it may not name that column until %s"
                            " completes (its triggers would read a name %s's contract changes); complete %s first,"
                            " or start the two together as one", hit, op->table, t->shape_of, c->m->name,
                            t->shape_of, t->shape_of, t->shape_of);
    }
    return 0;
}

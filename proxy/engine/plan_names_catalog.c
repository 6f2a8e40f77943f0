/* The names of the objects a migration creates, errors naming
 * operations[i], and the catalog as the migration's earlier operations
 * leave it: an operation validates against and builds on the columns they
 * add and the tables they create or rename, not only on the snapshot. */
#include "migration_plan.h"
#include "plan_ctx.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

__attribute__((format(printf, 3, 4)))
int op_error(struct plan_ctx *c, const struct mig_op *op, const char *fmt, ...)
{
    int off = snprintf(c->err, c->errlen, "%s: operations[%d].%s: ", c->m->file, op->index,
                       mig_op_name(op->kind));
    if (off > 0 && (size_t)off < c->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err + off, c->errlen - (size_t)off, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* fmt takes two %s: a and b. */
static void add_line(char ***list, size_t *n, const struct mig_op *op, const char *fmt, const char *a,
                     const char *b)
{
    char buf[512];
    int off = snprintf(buf, sizeof buf, "operations[%d].%s: ", op->index, mig_op_name(op->kind));
    snprintf(buf + off, sizeof buf - (size_t)off, fmt, a, b);
    char **grown = realloc(*list, (*n + 1) * sizeof(char *));
    if (grown) {
        *list = grown;
        (*list)[(*n)++] = strdup(buf);
    }
}

/* What `migrate plan` lists as carried: a dependent and how it gets to the
 * new shape. */
void carried(struct plan_ctx *c, const struct mig_op *op, const char *fmt, const char *a,
                    const char *b)
{
    add_line(&c->p->carried, &c->p->ncarried, op, fmt, a, b);
}

void object_name(char *out, size_t n, const char *kind, const struct mig_op *op, int k,
                        const char *mig)
{
    /* The index is padded (MAX_OPS is 1000) so that name order is operation
     * order: Postgres fires a table's triggers in name order, and a later
     * operation's `up` may read a column an earlier trigger fills. */
    char tag[MIG_NAME_TAG_MAX + 1];
    mig_name_tag(mig, tag);
    if (k >= 0)
        snprintf(out, n, "pgtandem_%s%03d_%d_%s", kind, op->index, k, tag);
    else
        snprintf(out, n, "pgtandem_%s%03d_%s", kind, op->index, tag);
}

/* The last operation among the first `before` remembered that makes a
 * table called name (a create_table, or a rename_table to it), with its
 * place in *at; NULL when none does. */
static const struct mig_op *created_table(const struct plan_ctx *c, const char *schema, const char *name,
                                          size_t before, size_t *at)
{
    while (before-- > 0) {
        const struct mig_op *op = c->created[before];
        if (!strcmp(op->schema, schema) && !strcmp(op->kind == MIG_RENAME_TABLE ? op->to : op->table, name)) {
            *at = before;
            return op;
        }
    }
    return NULL;
}

/* Where the table called name now comes from: the create_table that made
 * it (*made), or the name it has in the catalog, following the
 * migration's renames back (a table renamed twice, each rename from the
 * name the one before it gave). */
static const char *origin(const struct plan_ctx *c, const char *schema, const char *name,
                          const struct mig_op **made)
{
    size_t before = c->ncreated;
    const struct mig_op *op;
    *made = NULL;
    while ((op = created_table(c, schema, name, before, &before)) != NULL) {
        if (op->kind != MIG_RENAME_TABLE) {
            *made = op;
            return NULL;
        }
        name = op->from;
    }
    return name;
}

const struct mig_op *made_by(const struct plan_ctx *c, const char *schema, const char *name)
{
    size_t at;
    const struct mig_op *op = created_table(c, schema, name, c->ncreated, &at);
    return op && op->kind == MIG_CREATE_TABLE ? op : NULL;
}

const struct mig_cat_table *table_of(const struct plan_ctx *c, const char *schema,
                                            const char *name)
{
    const struct mig_op *made;
    const char *was = origin(c, schema, name, &made);
    return was ? mig_catalog_table(c->cat, schema, was) : NULL;
}

int table_exists(const struct plan_ctx *c, const char *schema, const char *name)
{
    size_t at;
    if (created_table(c, schema, name, c->ncreated, &at))
        return 1;
    const struct mig_cat_table *t = mig_catalog_table(c->cat, schema, name);
    return t && t->exists;
}

static const char *added_type(const struct plan_ctx *c, const char *schema, const char *table,
                              const char *col)
{
    for (size_t i = 0; i < c->nadded; i++)
        if (!strcmp(c->added[i].schema, schema) && !strcmp(c->added[i].table, table) &&
            !strcmp(c->added[i].name, col))
            return c->added[i].type;
    return NULL;
}

const char *column_type(const struct plan_ctx *c, const char *schema, const char *table,
                               const char *col)
{
    const char *t = added_type(c, schema, table, col);
    if (t)
        return t;
    /* a column of a table this migration creates (and may rename) */
    const struct mig_op *made;
    origin(c, schema, table, &made);
    for (size_t i = 0; made && made->kind == MIG_CREATE_TABLE && i < made->ncols; i++)
        if (strcmp(made->cols[i].name, col) == 0)
            return made->cols[i].type;
    struct mig_cat_column *cc = mig_catalog_column(table_of(c, schema, table), col);
    return cc ? cc->type : NULL;
}

void remember_column(struct plan_ctx *c, const char *schema, const char *table,
                            const char *name, const char *type)
{
    if (c->nadded >= sizeof c->added / sizeof c->added[0])
        return;
    struct vcol *v = &c->added[c->nadded++];
    v->schema = schema;
    v->table = table;
    snprintf(v->name, sizeof v->name, "%s", name);
    snprintf(v->type, sizeof v->type, "%s", type);
}

/* Later operations find the table a create_table or rename_table makes. */
void remember_table(struct plan_ctx *c, const struct mig_op *op)
{
    if (c->ncreated < sizeof c->created / sizeof c->created[0])
        c->created[c->ncreated++] = op;
}

int require_table(struct plan_ctx *c, const struct mig_op *op, const char *name)
{
    if (!c->cat || table_exists(c, op->schema, name))
        return 0;
    return op_error(c, op, "table \"%s.%s\" does not exist", op->schema, name);
}

int require_column(struct plan_ctx *c, const struct mig_op *op, const char *table,
                          const char *col)
{
    if (!c->cat || column_type(c, op->schema, table, col))
        return 0;
    return op_error(c, op, "column \"%s\" does not exist in table \"%s.%s\"", col, op->schema, table);
}

int require_no_column(struct plan_ctx *c, const struct mig_op *op, const char *table,
                             const char *col)
{
    if (!c->cat || !column_type(c, op->schema, table, col))
        return 0;
    return op_error(c, op, "column \"%s\" already exists in table \"%s.%s\"; pick another name",
                    col, op->schema, table);
}

int require_columns(struct plan_ctx *c, const struct mig_op *op, const char *table, char *const *cols,
                    size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (require_column(c, op, table, cols[i]))
            return -1;
    return 0;
}

int require_key(struct plan_ctx *c, const struct mig_op *op, const char *table)
{
    const struct mig_cat_table *t = table_of(c, op->schema, table);
    if (!c->cat || !t || t->npk > 0)
        return 0;
    return op_error(c, op, "table \"%s.%s\" has no primary key (or unique index over NOT NULL "
                    "columns); the backfill walks rows in key order and cannot resume without one. "
                    "Add a primary key first", op->schema, table);
}

const struct mig_op *other_op_on_table(const struct plan_ctx *c, const struct mig_op *op,
                                       int (*counts)(const struct mig_op *o, const struct mig_op *op), size_t *index)
{
    for (size_t i = 0; i < c->m->nops; i++) {
        const struct mig_op *o = &c->m->ops[i];
        const char *table = o->kind == MIG_RENAME_TABLE ? o->from : o->table;
        if (o != op && table && !strcmp(table, op->table) && !strcmp(o->schema, op->schema) && counts(o, op)) {
            *index = i;
            return o;
        }
    }
    return NULL;
}

int key_uses(const struct plan_ctx *c, const struct mig_op *op, const char *table, const char *col)
{
    const struct mig_cat_table *t = table_of(c, op->schema, table);
    for (size_t k = 0; t && k < t->npk; k++)
        if (strcmp(t->pk[k], col) == 0)
            return 1;
    return 0;
}

/* Nothing but simple indexes (and the primary key or unique constraints
 * they back) depends on the column: an in-place ALTER ... TYPE keeps those
 * (Postgres reuses an index it can tell is unchanged), where a CHECK, a
 * foreign key or a view would be checked or rebuilt under its lock. */
static int only_simple_indexes(const struct mig_cat_table *t, const char *col)
{
    for (size_t i = 0; t && i < t->ndeps; i++) {
        const struct mig_cat_dep *d = &t->deps[i];
        if (strcmp(d->column, col) != 0)
            continue;
        int indexed = d->kind == MIG_DEP_INDEX || (d->kind == MIG_DEP_CONSTRAINT && (d->contype == 'p' ||
                                                                                    d->contype == 'u'));
        if (!indexed || d->foreign)
            return 0;
        const struct mig_cat_index *ix = NULL;
        for (size_t k = 0; k < t->nidx && !ix; k++)
            if (!strcmp(t->idx[k].name, d->name) || (t->idx[k].constraint && !strcmp(t->idx[k].constraint, d->name)))
                ix = &t->idx[k];
        if (!ix || !ix->simple)
            return 0;
    }
    return 1;
}

int retype_in_place(const struct plan_ctx *c, const struct mig_op *op, const char *col)
{
    const struct mig_catalog *cat = c->cat;
    if (!cat || !cat->retype_in_place || (size_t)op->index >= cat->nretype_in_place ||
        !cat->retype_in_place[op->index])
        return 0;
    return only_simple_indexes(table_of(c, op->schema, op->table), col);
}

static int ref_column(const struct mig_cat_ref *f, const char *col)
{
    for (size_t k = 0; k < f->ncols; k++)
        if (strcmp(f->cols[k], col) == 0)
            return 1;
    return 0;
}

const struct mig_op *removes_fkey(const struct plan_ctx *c, const struct mig_op *op, const struct mig_cat_ref *f,
                                  int anywhere)
{
    size_t end = anywhere ? c->m->nops : (size_t)op->index;
    for (size_t i = 0; i < end && i < c->m->nops; i++) {
        const struct mig_op *o = &c->m->ops[i];
        if (o == op || (o->kind != MIG_DROP_TABLE && o->kind != MIG_DROP_COLUMN && o->kind != MIG_DROP_CONSTRAINT))
            continue;
        const struct mig_cat_table *t = table_of(c, o->schema, o->table);
        if (!t || strcmp(t->schema, f->schema) != 0 || strcmp(t->name, f->table) != 0)
            continue;
        if (o->kind == MIG_DROP_TABLE || (o->kind == MIG_DROP_COLUMN && ref_column(f, o->column)) ||
            (o->kind == MIG_DROP_CONSTRAINT && o->name && !strcmp(o->name, f->name)))
            return o;
    }
    return NULL;
}

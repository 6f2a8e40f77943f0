/* The pieces of each backfill batch: per table, the SET list, the predicate
 * of rows that still need it, and for verify the rows whose shapes
 * disagree. */
#include "migration_plan.h"
#include "plan_ctx.h"
#include "sql_fragment.h"

#include <stdlib.h>
#include <string.h>

static struct mig_bf_table *bf_table(struct plan_ctx *c, const struct mig_op *op, const char *table)
{
    for (size_t i = 0; i < c->p->nbf; i++)
        if (!strcmp(c->p->bf[i].schema, op->schema) && !strcmp(c->p->bf[i].name, table))
            return &c->p->bf[i];
    struct mig_bf_table *grown = realloc(c->p->bf, (c->p->nbf + 1) * sizeof *grown);
    if (!grown)
        return NULL;
    c->p->bf = grown;
    struct mig_bf_table *b = &c->p->bf[c->p->nbf++];
    memset(b, 0, sizeof *b);
    b->schema = strdup(op->schema);
    b->name = strdup(table);
    b->qname = mig_quote_qname(op->schema, table);
    const struct mig_cat_table *t = table_of(c, op->schema, table);
    b->npk = t ? t->npk : 1;
    b->pk = calloc(b->npk, sizeof(char *));
    b->pk_types = calloc(b->npk, sizeof(char *));
    for (size_t k = 0; b->pk && b->pk_types && k < b->npk; k++) {
        b->pk[k] = t ? mig_quote_ident(t->pk[k]) : strdup("<primary key>");
        b->pk_types[k] = strdup(t ? t->pk_types[k] : "<key type>");
    }
    b->est_rows = t ? t->est_rows : 0;
    return b;
}

static void append_joined(char **dst, const char *sep, const char *piece)
{
    struct mig_str s = {0};
    if (*dst) {
        mig_str_add(&s, *dst);
        mig_str_add(&s, sep);
    }
    mig_str_add(&s, piece);
    free(*dst);
    *dst = mig_str_take(&s);
}

/* up as the batch must run it. Every SET of one UPDATE reads the row as
 * it was before the statement, where offline an earlier operation had
 * already written it: a column an earlier piece of this batch sets is
 * read as the value that piece gives it (61207-0-fill-retyped: an
 * added column's fill, then its retype, whose copy read NULL and lost the
 * value; a reference qualified by the table's name too). up as written
 * when it reads none, or when the places cannot be read; NULL out of
 * memory. */
static char *after_earlier_pieces(const struct mig_bf_table *b, const char *up)
{
    const char **from = calloc(b->nexprs + 1, sizeof *from), **values = calloc(b->nexprs + 1, sizeof *values);
    size_t n = 0;
    for (size_t i = 0; from && values && i < b->nexprs; i++) {
        if (!b->exprs[i].value)
            continue;
        from[n] = b->exprs[i].column;
        values[n++] = b->exprs[i].value;
    }
    char *out = n ? sql_fragment_substitute_columns(up, b->name, from, values, n) : NULL;
    free(from);
    free(values);
    return out ? out : strdup(up);
}

/* The SET item `"col" = value` (NULL out of memory). */
static char *set_item(const char *col, const char *value)
{
    if (!value)
        return NULL;
    struct mig_str s = {0};
    mig_str_ident(&s, col);
    mig_str_addf(&s, " = %s", value);
    return mig_str_take(&s);
}

static void remember_expression(struct plan_ctx *c, struct mig_bf_table *b, const struct mig_op *op,
                                const char *column, const char *type, const char *up, const char *pending,
                                const char *value)
{
    struct mig_bf_expr *grown = realloc(b->exprs, (b->nexprs + 1) * sizeof *grown);
    if (!grown) {
        c->p->expand.oom = 1;
        return;
    }
    b->exprs = grown;
    struct mig_bf_expr *x = &b->exprs[b->nexprs++];
    char what[64];
    snprintf(what, sizeof what, "operations[%d].%s", op->index, mig_op_name(op->kind));
    x->what = strdup(what);
    x->column = strdup(column);
    x->type = type ? strdup(type) : NULL;
    x->up = strdup(up);
    x->pending = pending ? strdup(pending) : NULL;
    x->value = strdup(value);
    if (!x->what || !x->column || !x->up || !x->pending || !x->value)
        c->p->expand.oom = 1;
}

/* new = up(old) for rows the application has not written since expand: the
 * trigger fills the new column on every write after expand, so a row whose
 * new column is still NULL while up would give it a value has never been
 * written. old_col is given when up is the plain copy or cast of it, which
 * is NULL exactly when old_col is: the cheaper test then; old_col ==
 * new_col for a default that fills what is NULL (evaluated once a row). */
void add_backfill(struct plan_ctx *c, const struct mig_op *op, const char *table,
                         const char *new_col, const char *type, const char *old_col, const char *up, int verify)
{
    struct mig_bf_table *b = bf_table(c, op, table);
    char *read_up = b ? after_earlier_pieces(b, up) : NULL;
    if (!read_up) {
        c->p->expand.oom = 1;
        return;
    }
    if (strcmp(read_up, up) != 0)
        old_col = NULL;     /* not the plain copy of a column as the row has it */
    up = read_up;
    struct mig_str set = {0}, pend = {0}, mis = {0};
    mig_str_add(&set, "CASE WHEN ");
    mig_str_ident(&pend, new_col);
    mig_str_add(&pend, " IS NULL");
    if (old_col == new_col) {
        /* a default filling NULLs: its value is never NULL, and may differ per call */
    } else if (old_col) {
        mig_str_add(&pend, " AND ");
        mig_str_ident(&pend, old_col);
        mig_str_add(&pend, " IS NOT NULL");
    } else {
        mig_str_addf(&pend, " AND (%s) IS NOT NULL", up);
    }
    char *pending = mig_str_take(&pend);
    /* the SET tests only that the new column is still NULL: where `up` gives
     * NULL it writes NULL over NULL, and `up` (a JSON parse, say) runs once a
     * row instead of twice */
    mig_str_ident(&set, new_col);
    mig_str_addf(&set, " IS NULL THEN (%s) ELSE ", up);
    mig_str_ident(&set, new_col);
    mig_str_add(&set, " END");
    char *value = mig_str_take(&set);
    remember_expression(c, b, op, new_col, type, up, pending, value ? value : "");
    char *setv = set_item(new_col, value);
    char *wrapped = NULL;
    append_joined(&wrapped, "", "(");
    append_joined(&wrapped, "", pending);
    append_joined(&wrapped, "", ")");
    append_joined(&b->set_list, ", ", setv);
    append_joined(&b->pending, " OR ", wrapped);
    if (verify) {
        mig_str_ident(&mis, new_col);
        mig_str_addf(&mis, " IS DISTINCT FROM (%s)", up);
        char *m = mig_str_take(&mis);
        append_joined(&b->mismatch, " OR ", m);
        free(m);
    }
    free(setv);
    free(value);
    free(wrapped);
    free(pending);
    free(read_up);
}

/* Each batch visits each row of its key window once, so a row the
 * statement changes in a way its own WHERE still picks is changed once, as
 * by the statement run whole. */
void add_data_update(struct plan_ctx *c, const struct mig_op *op, const char *table, const char *col,
                     const char *type, const char *up, const char *where)
{
    struct mig_bf_table *b = bf_table(c, op, table);
    if (!b)
        return;
    b->data = 1;
    char *read_up = after_earlier_pieces(b, up), *read_where = where ? after_earlier_pieces(b, where) : NULL;
    if (!read_up || (where && !read_where)) {
        free(read_up);
        free(read_where);
        c->p->expand.oom = 1;
        return;
    }
    up = read_up;
    where = read_where;
    struct mig_str set = {0}, pend = {0};
    mig_str_addf(&pend, "(%s)", where ? where : "true");
    char *pending = mig_str_take(&pend);
    if (where) {
        mig_str_addf(&set, "CASE WHEN (%s) THEN (%s) ELSE ", where, up);
        mig_str_ident(&set, col);
        mig_str_add(&set, " END");
    } else {
        mig_str_addf(&set, "(%s)", up);
    }
    char *value = mig_str_take(&set);
    remember_expression(c, b, op, col, type, up, pending, value ? value : "");
    char *setv = set_item(col, value);
    append_joined(&b->set_list, ", ", setv);
    append_joined(&b->pending, " OR ", pending);
    free(setv);
    free(value);
    free(pending);
    free(read_up);
    free(read_where);
}

void add_data_delete(struct plan_ctx *c, const struct mig_op *op, const char *table, const char *where)
{
    struct mig_bf_table *b = bf_table(c, op, table);
    if (!b)
        return;
    struct mig_str pend = {0};
    mig_str_addf(&pend, "(%s)", where ? where : "true");
    b->deletes = 1;
    b->data = 1;
    free(b->set_list);
    b->set_list = strdup("");
    free(b->pending);
    b->pending = mig_str_take(&pend);
    if (!b->set_list || !b->pending)
        c->p->expand.oom = 1;
}

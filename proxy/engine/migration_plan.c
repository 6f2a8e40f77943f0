/* SQL generation for every phase of a migration (expand, validate, contract,
 * post-contract, rollback) and the pieces of each backfill batch. Pure: reads
 * the migration and a catalog snapshot, writes strings. Each operation plans
 * its own statements (ops/op_<kind>.c, behind include/engine/ops/op.h), in the migration's
 * order; this file looks it up, then adds what the migration as a whole
 * needs: the version schema (the new shape) and the old shape's schema,
 * each with a view per table whose columns change. */
#include "migration_plan.h"
#include "plan_ctx.h"
#include "migration_names.h"
#include "ops/op.h"

#include <stdlib.h>
#include <string.h>

static const struct mig_op_def *const op_defs[] = {
    &op_rename_column, &op_add_column, &op_alter_column, &op_drop_column, &op_create_table, &op_drop_table,
    &op_rename_table, &op_create_index, &op_drop_index, &op_create_constraint, &op_sql,
    &op_drop_constraint, &op_rename_constraint, &op_set_replica_identity, &op_add_enum_value,
    &op_rename_enum_value, &op_update_rows, &op_delete_rows,
};

static const struct mig_op_def *op_def(enum mig_op_kind kind)
{
    for (size_t i = 0; i < sizeof op_defs / sizeof op_defs[0]; i++)
        if (op_defs[i]->kind == kind)
            return op_defs[i];
    return NULL;
}

static int plan_op(struct plan_ctx *c, const struct mig_op *op)
{
    const struct mig_op_def *d = op_def(op->kind);
    if (!d || refuse_on_partitioned(c, op))
        return -1;
    return d->plan(c, op);
}

/* ---- version schema ------------------------------------------------------- */

static int op_touches_columns(const struct mig_op *op, const char *schema, const char *table)
{
    const struct mig_op_def *d = op_def(op->kind);
    return d && d->changes_columns && !strcmp(op->schema, schema) && !strcmp(op->table, table);
}

/* Operation i is the first to change the columns of its table: each such
 * table gets one view per shape. */
static int first_to_change_columns(const struct plan_ctx *c, size_t i)
{
    const struct mig_op *op = &c->m->ops[i];
    if (!op->table || !op_touches_columns(op, op->schema, op->table))
        return 0;
    for (size_t j = 0; j < i; j++)
        if (op_touches_columns(&c->m->ops[j], op->schema, op->table))
            return 0;
    return 1;
}

/* "column AS name", quoted. */
static char *aliased(const char *column, const char *name)
{
    struct mig_str s = {0};
    mig_str_ident(&s, column);
    mig_str_add(&s, " AS ");
    mig_str_ident(&s, name);
    return mig_str_take(&s);
}

/* How the new shape names a physical column: NULL hides it, otherwise the
 * select-list item. */
static char *view_item(const struct plan_ctx *c, const char *schema, const char *table, const char *col)
{
    for (size_t i = 0; i < c->m->nops; i++) {
        const struct mig_op *op = &c->m->ops[i];
        if (!op_touches_columns(op, schema, table))
            continue;
        /* A rename that keeps the original shows the original under the new
         * name: writes through the new shape then reach it as an offline
         * rename's would (UPDATE OF triggers fire, generated columns and
         * defaults apply); the copy only serves clients that bypass the view. */
        int keeps = op->kind == MIG_RENAME_COLUMN && rename_keeps_original(c, op);
        if (keeps && !strcmp(op->to, col))
            return NULL;
        if (keeps && !strcmp(op->from, col))
            return aliased(op->from, op->to);
        if (op->kind == MIG_RENAME_COLUMN && !strcmp(op->from, col))
            return NULL;
        if (op->kind == MIG_ALTER_COLUMN && alter_in_place(c, op))
            continue;
        if ((op->kind == MIG_DROP_COLUMN || op->kind == MIG_ALTER_COLUMN) && !strcmp(op->column, col))
            return NULL;
        char shadow[80];
        if (op->kind == MIG_ALTER_COLUMN) {
            mig_shadow_name(shadow, sizeof shadow, op->column);
            if (!strcmp(shadow, col))
                return aliased(shadow, op->column);
        }
        if (op->kind == MIG_ADD_COLUMN && mig_add_column_freed_by(c->m, op)) {
            mig_shadow_name(shadow, sizeof shadow, op->col.name);
            if (!strcmp(shadow, col))
                return aliased(shadow, op->col.name);
        }
    }
    return mig_quote_ident(col);
}

static void add_item(struct mig_str *s, int *first, char *item)
{
    if (!item)
        return;
    mig_str_add(s, *first ? "" : ", ");
    mig_str_add(s, item);
    *first = 0;
    free(item);
}

static void version_view(struct plan_ctx *c, const struct mig_op *op)
{
    const struct mig_cat_table *t = table_of(c, op->schema, op->table);
    struct mig_str s = {0};
    mig_str_add(&s, "CREATE VIEW ");
    mig_str_add(&s, c->p->version_schema);
    mig_str_add(&s, ".");
    mig_str_ident(&s, op->table);
    mig_str_add(&s, " WITH (security_invoker = true) AS SELECT ");
    int first = 1;
    for (size_t i = 0; t && i < t->ncols; i++) {
        /* built on a migration in flight: its names for the columns, and
         * none of those it hides (plan_on_shape.c) */
        const char *shown = shape_shows(t, t->cols[i].name);
        char *item = shown ? view_item(c, op->schema, op->table, t->cols[i].name) : NULL;
        if (item && strcmp(shown, t->cols[i].name)) {
            const char *to = renamed_plainly_to(c, op->schema, op->table, shown);
            free(item);
            item = aliased(t->cols[i].name, to ? to : shown);
        }
        add_item(&s, &first, item);
    }
    /* a table this migration creates: its columns, as create_table makes them */
    const struct mig_op *made = t ? NULL : made_by(c, op->schema, op->table);
    for (size_t i = 0; made && i < made->ncols; i++)
        add_item(&s, &first, view_item(c, op->schema, op->table, made->cols[i].name));
    for (size_t i = 0; i < c->nadded; i++)
        if (!strcmp(c->added[i].schema, op->schema) && !strcmp(c->added[i].table, op->table))
            add_item(&s, &first, view_item(c, op->schema, op->table, c->added[i].name));
    if (first)
        mig_str_add(&s, "*");
    mig_str_add(&s, " FROM ");
    mig_str_qname(&s, op->schema, op->table);
    mig_steps_add(&c->p->expand, -1, MIG_STEP_TXN, mig_str_take(&s));
}

static char *sql_printf(const char *fmt, const char *arg)
{
    struct mig_str s = {0};
    mig_str_addf(&s, fmt, arg);
    return mig_str_take(&s);
}

/* A shape's schema. Every role that may use the tables may use their
 * shapes: the views are security_invoker, so the base tables' privileges
 * still decide. */
static void open_shape_schema(struct mig_steps *l, const char *qschema)
{
    mig_steps_add(l, -1, MIG_STEP_TXN, sql_printf("CREATE SCHEMA %s", qschema));
    mig_steps_add(l, -1, MIG_STEP_TXN, sql_printf("GRANT USAGE ON SCHEMA %s TO PUBLIC", qschema));
}

static void grant_shape_views(struct mig_steps *l, const char *qschema)
{
    mig_steps_add(l, -1, MIG_STEP_TXN,
                  sql_printf("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %s TO PUBLIC", qschema));
}

static void version_schema(struct plan_ctx *c)
{
    char name[80];
    mig_version_schema(c->m->name, name, sizeof name);
    c->p->version_schema = mig_quote_ident(name);
    open_shape_schema(&c->p->expand, c->p->version_schema);
    size_t first_view = c->p->expand.n;
    for (size_t i = 0; i < c->m->nops; i++)
        if (first_to_change_columns(c, i))
            version_view(c, &c->m->ops[i]);
    append_steps(&c->p->expand, &c->shape_defaults);
    append_steps(&c->p->expand, &c->new_shape_sql);
    if (c->p->expand.n > first_view)
        grant_shape_views(&c->p->expand, c->p->version_schema);
    char *drop = sql_printf("DROP SCHEMA IF EXISTS %s CASCADE", c->p->version_schema);
    /* The views read the old columns, so they go before anything is dropped. */
    mig_steps_add(&c->p->contract, -1, MIG_STEP_TXN, drop ? strdup(drop) : NULL);
    mig_steps_add(&c->p->rollback, -1, MIG_STEP_TXN, drop);
}

/* The old shape: for every table whose columns the migration changes, a
 * view in pgtandem_<name>_old that selects exactly the columns the table has
 * before the migration starts, in their order, under their names. Every
 * session that did not declare the new version reads and writes through
 * it from the start to the end of the migration, so nothing expand adds
 * (new columns, shadow columns) reaches the old release's `SELECT *` or
 * its prepared statements. Its statements come first in the expand, in
 * the same transaction as the first table change. */
static void old_shape_view(struct plan_ctx *c, struct mig_steps *out, const char *schema, const char *table,
                           const char *qschema)
{
    const struct mig_cat_table *t = mig_catalog_table(c->cat, schema, table);
    if (c->cat && (!t || !t->exists))
        return; /* created by this migration: the old release does not know it */
    struct mig_str s = {0};
    mig_str_addf(&s, "CREATE VIEW %s.", qschema);
    mig_str_ident(&s, table);
    mig_str_add(&s, " WITH (security_invoker = true) AS SELECT ");
    /* the table as the migration in flight below shows it, if any */
    int listed = 0;
    for (size_t i = 0; t && i < t->ncols; i++) {
        const char *shown = shape_shows(t, t->cols[i].name);
        if (!shown)
            continue;
        mig_str_add(&s, listed++ ? ", " : "");
        mig_str_ident(&s, t->cols[i].name);
        if (strcmp(shown, t->cols[i].name)) {
            mig_str_add(&s, " AS ");
            mig_str_ident(&s, shown);
        }
    }
    mig_str_add(&s, listed ? " FROM " : "* FROM "); /* offline: * is expanded when the view is made */
    mig_str_qname(&s, schema, table);
    mig_steps_add(out, -1, MIG_STEP_TXN, mig_str_take(&s));
}

static void prepend_steps(struct mig_steps *to, struct mig_steps *from)
{
    struct mig_steps all = {0};
    for (size_t i = 0; i < from->n + to->n; i++) {
        struct mig_step *st = i < from->n ? &from->v[i] : &to->v[i - from->n];
        mig_steps_add(&all, st->op_index, st->mode, st->sql);
        if (st->cleanup)
            mig_steps_set_cleanup(&all, st->cleanup);
        st->sql = st->cleanup = NULL;
    }
    all.oom |= to->oom || from->oom;
    mig_steps_free(to);
    mig_steps_free(from);
    *to = all;
}

/* Rollback undoes operations last-first, but the steps of one operation keep
 * their order (a trigger goes before its function). */
static void reverse_op_groups(struct mig_steps *l)
{
    if (l->n == 0)
        return;
    struct mig_step *out = malloc((l->n ? l->n : 1) * sizeof *out);
    if (!out) {
        l->oom = 1;
        return;
    }
    size_t pos = 0, end = l->n;
    while (end > 0) {
        size_t start = end - 1;
        while (start > 0 && l->v[start - 1].op_index == l->v[end - 1].op_index)
            start--;
        memcpy(out + pos, l->v + start, (end - start) * sizeof *out);
        pos += end - start;
        end = start;
    }
    memcpy(l->v, out, l->n * sizeof *out);
    free(out);
}

static void move_last_to_front(struct mig_steps *l)
{
    if (l->n < 2)
        return;
    struct mig_step last = l->v[l->n - 1];
    memmove(l->v + 1, l->v, (l->n - 1) * sizeof last);
    l->v[0] = last;
}

static void old_shape_schema(struct plan_ctx *c)
{
    char name[80];
    mig_old_schema(c->m->name, name, sizeof name);
    char *q = mig_quote_ident(name);
    if (!q) {
        c->p->expand.oom = 1;
        return;
    }
    struct mig_steps steps = {0};
    open_shape_schema(&steps, q);
    size_t first_view = steps.n;
    for (size_t i = 0; i < c->m->nops; i++)
        if (first_to_change_columns(c, i))
            old_shape_view(c, &steps, c->m->ops[i].schema, c->m->ops[i].table, q);
    if (steps.n > first_view) {
        grant_shape_views(&steps, q);
        prepend_steps(&c->p->expand, &steps);
        /* The old release reads it until the very end of a rollback; the
         * contract drops it with the new shape's. */
        char *drop = sql_printf("DROP SCHEMA IF EXISTS %s CASCADE", q);
        mig_steps_add(&c->p->contract, -1, MIG_STEP_TXN, drop ? strdup(drop) : NULL);
        move_last_to_front(&c->p->contract);
        mig_steps_add(&c->p->rollback, -1, MIG_STEP_TXN, drop);
    }
    mig_steps_free(&steps);
    free(q);
}

int mig_plan_build(const struct migration *m, const struct mig_catalog *cat, struct mig_plan *p,
                   char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    struct plan_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    *c = (struct plan_ctx){.m = m, .cat = cat, .p = p, .err = err, .errlen = errlen};
    int rc = plan_check_shapes(c);
    for (size_t i = 0; i < m->nops && rc == 0; i++)
        rc = plan_op(c, &m->ops[i]);
    if (rc == 0) {
        reverse_op_groups(&p->rollback);
        version_schema(c);
        /* The views read the old columns, so the version schema goes first. */
        move_last_to_front(&p->contract);
        move_last_to_front(&p->rollback);
        old_shape_schema(c);
        /* Renames brought forward go before the old shape's views, which
         * read the new name; the rollback undoes them last. */
        struct mig_steps front = {0};
        plan_forward_renames(c, &front);
        prepend_steps(&p->expand, &front);
        /* An enum value added at expand commits before any statement that
         * may use it runs. */
        prepend_steps(&p->expand, &c->first);
    }
    int oom = p->expand.oom || p->contract.oom || p->rollback.oom || p->validate.oom || p->post.oom;
    if (rc == 0 && oom) {
        snprintf(err, errlen, "out of memory building the plan");
        rc = -1;
    }
    mig_steps_free(&c->shape_defaults);
    mig_steps_free(&c->new_shape_sql);
    mig_steps_free(&c->first);
    free(c);
    if (rc != 0)
        mig_plan_free(p);
    return rc;
}

void add_shape_default(struct plan_ctx *c, const struct mig_op *op, const char *table, const char *view_col,
                       const char *expr)
{
    char name[80];
    mig_version_schema(c->m->name, name, sizeof name);
    struct mig_str s = {0};
    mig_str_add(&s, "ALTER VIEW ");
    mig_str_qname(&s, name, table);
    mig_str_add(&s, " ALTER COLUMN ");
    mig_str_ident(&s, view_col);
    mig_str_addf(&s, " SET DEFAULT %s", expr ? expr : "NULL");
    mig_steps_add(&c->shape_defaults, op->index, MIG_STEP_TXN, mig_str_take(&s));
}

static void free_bf(struct mig_bf_table *b)
{
    free(b->schema); free(b->name); free(b->qname); free(b->set_list); free(b->pending);
    free(b->mismatch);
    for (size_t i = 0; i < b->nexprs; i++) {
        free(b->exprs[i].what); free(b->exprs[i].column); free(b->exprs[i].up); free(b->exprs[i].pending); free(b->exprs[i].value);
        free(b->exprs[i].type);
    }
    free(b->exprs);
    for (size_t k = 0; k < b->npk; k++) {
        free(b->pk ? b->pk[k] : NULL);
        free(b->pk_types ? b->pk_types[k] : NULL);
    }
    free(b->pk);
    free(b->pk_types);
}

void mig_check_free(struct mig_check *k)
{
    free(k->describe);
    free(k->add);
    free(k->validate);
    free(k->violations);
    free(k->drop);
    memset(k, 0, sizeof *k);
}

void mig_plan_free(struct mig_plan *p)
{
    mig_steps_free(&p->expand);
    mig_steps_free(&p->validate);
    for (size_t i = 0; i < p->nchecks; i++)
        mig_check_free(&p->checks[i]);
    free(p->checks);
    mig_steps_free(&p->contract);
    mig_steps_free(&p->post);
    mig_steps_free(&p->rollback);
    for (size_t i = 0; i < p->nbf; i++)
        free_bf(&p->bf[i]);
    free(p->bf);
    free(p->version_schema);
    for (size_t i = 0; i < p->nnotes; i++)
        free(p->notes[i]);
    free(p->notes);
    for (size_t i = 0; i < p->ncarried; i++)
        free(p->carried[i]);
    free(p->carried);
    memset(p, 0, sizeof *p);
}

static void print_steps(FILE *out, const char *title, const struct mig_steps *l, const char *begin,
                        const char *end)
{
    fprintf(out, "\n-- == %s ==\n", title);
    if (l->n == 0) {
        fprintf(out, "-- (nothing)\n");
        return;
    }
    int in_txn = 0;
    for (size_t i = 0; i < l->n; i++) {
        const struct mig_step *s = &l->v[i];
        if (s->mode == MIG_STEP_TXN && !in_txn && begin) {
            fprintf(out, "%s\n", begin);
            in_txn = 1;
        } else if (s->mode == MIG_STEP_ALONE && in_txn) {
            fprintf(out, "COMMIT;\n");
            in_txn = 0;
        }
        if (s->op_index >= 0)
            fprintf(out, "-- operations[%d]\n", s->op_index);
        fprintf(out, "%s;\n", s->sql);
    }
    if (in_txn)
        fprintf(out, "%s\n", end);
}

void mig_plan_print(const struct migration *m, const struct mig_plan *p, FILE *out)
{
    fprintf(out, "-- pgtandem plan for migration %s (parent %s), checksum %s\n", m->name,
            m->parent ? m->parent : "none", m->checksum);
    for (size_t i = 0; i < p->nnotes; i++)
        fprintf(out, "-- NOTE %s\n", p->notes[i]);
    for (size_t i = 0; i < p->ncarried; i++)
        fprintf(out, "-- CARRIED %s\n", p->carried[i]);
    char why[512];
    if (mig_revert_blocker(m, why, sizeof why) >= 0)
        fprintf(out, "-- NOT REVERTIBLE after complete: %s; complete it without --revert-window-s\n", why);
    else
        fprintf(out, "-- REVERTIBLE: `complete --revert-window-s S` keeps the old shape, so `revert` loses no row\n");
    print_steps(out, "expand", &p->expand, "BEGIN;", "COMMIT;");
    fprintf(out, "\n-- == backfill ==\n");
    if (p->nbf == 0)
        fprintf(out, "-- (nothing)\n");
    for (size_t i = 0; i < p->nbf; i++) {
        const struct mig_bf_table *b = &p->bf[i];
        fprintf(out, "-- %s: keyset batches on (", b->qname);
        for (size_t k = 0; k < b->npk; k++)
            fprintf(out, "%s%s", k ? ", " : "", b->pk[k]);
        if (b->deletes)
            fprintf(out, "), session setting " MIG_BACKFILL_GUC "=on, each batch:\n"
                    "-- DELETE FROM %s\n--  WHERE <key in (last checkpoint, batch end]> AND (%s)\n", b->qname,
                    b->pending);
        else
            fprintf(out, "), session setting " MIG_BACKFILL_GUC "=on, each batch:\n"
                    "-- UPDATE %s SET %s\n--  WHERE <key in (last checkpoint, batch end]> AND (%s)\n",
                    b->qname, b->set_list, b->pending);
    }
    print_steps(out, "validate (after backfill)", &p->validate, NULL, NULL);
    fprintf(out, "\n-- == complete, before the cutover (traffic flows) ==\n");
    if (p->nchecks == 0)
        fprintf(out, "-- (nothing)\n");
    for (size_t i = 0; i < p->nchecks; i++) {
        const struct mig_check *k = &p->checks[i];
        fprintf(out, "-- %s\nBEGIN;\n%sCOMMIT;\n%s;\n-- rows that violate it (complete stops and names them):\n"
                "-- %s;\n", k->describe, k->add, k->validate, k->violations);
    }
    print_steps(out, "contract (one transaction, SET LOCAL lock_timeout)", &p->contract, "BEGIN;", "COMMIT;");
    print_steps(out, "after contract", &p->post, NULL, NULL);
    print_steps(out, "rollback", &p->rollback, "BEGIN;", "COMMIT;");
}

/* SQL generation for every phase of a migration (expand, validate, contract,
 * post-contract, rollback) and the pieces of each backfill batch. Pure: reads
 * the migration and a catalog snapshot, writes strings. Identifiers are always
 * quoted through migration_sql; `up`/`down`/`default`/`check`/`where` are SQL
 * expressions written by the migration's author and are embedded as code. */
#include "migration_plan.h"
#include "migration_dependents.h"
#include "sql_fragment.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

struct vcol {
    const char *schema, *table;   /* owned by the migration */
    char name[72], type[136];     /* copies: callers pass stack buffers */
};

struct plan_ctx {
    const struct migration *m;
    const struct mig_catalog *cat;
    struct mig_plan *p;
    char *err;
    size_t errlen;
    struct vcol added[256];     /* columns added by earlier operations */
    size_t nadded;
    const struct mig_op *created[64];  /* create_table / rename_table targets so far */
    size_t ncreated;
    const char *views[64];      /* views re-created by the contract so far (catalog names) */
    size_t nviews;
};

__attribute__((format(printf, 3, 4)))
static int op_error(struct plan_ctx *c, const struct mig_op *op, const char *fmt, ...)
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
static void carried(struct plan_ctx *c, const struct mig_op *op, const char *fmt, const char *a,
                    const char *b)
{
    add_line(&c->p->carried, &c->p->ncarried, op, fmt, a, b);
}

/* ---- names of the objects a migration creates --------------------------- */

static void object_name(char *out, size_t n, const char *kind, const struct mig_op *op, int k,
                        const char *mig)
{
    /* The index is padded (MAX_OPS is 1000) so that name order is operation
     * order: Postgres fires a table's triggers in name order, and a later
     * operation's `up` may read a column an earlier trigger fills. */
    if (k >= 0)
        snprintf(out, n, "pgtandem_%s%03d_%d_%s", kind, op->index, k, mig);
    else
        snprintf(out, n, "pgtandem_%s%03d_%s", kind, op->index, mig);
}

static void shadow_name(char *out, size_t n, const char *column)
{
    mig_shadow_name(out, n, column);
}

/* ---- catalog view that follows earlier operations of the same migration -- */

static const struct mig_op *created_table(const struct plan_ctx *c, const char *schema,
                                          const char *name)
{
    for (size_t i = 0; i < c->ncreated; i++) {
        const struct mig_op *op = c->created[i];
        const char *n = op->kind == MIG_RENAME_TABLE ? op->to : op->table;
        if (strcmp(op->schema, schema) == 0 && strcmp(n, name) == 0)
            return op;
    }
    return NULL;
}

static const struct mig_cat_table *table_of(const struct plan_ctx *c, const char *schema,
                                            const char *name)
{
    const struct mig_op *op = created_table(c, schema, name);
    if (op && op->kind == MIG_RENAME_TABLE)
        return mig_catalog_table(c->cat, schema, op->from);
    if (op)
        return NULL;
    return mig_catalog_table(c->cat, schema, name);
}

static int table_exists(const struct plan_ctx *c, const char *schema, const char *name)
{
    if (created_table(c, schema, name))
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

static const char *column_type(const struct plan_ctx *c, const char *schema, const char *table,
                               const char *col)
{
    const char *t = added_type(c, schema, table, col);
    if (t)
        return t;
    struct mig_cat_column *cc = mig_catalog_column(table_of(c, schema, table), col);
    return cc ? cc->type : NULL;
}

static void remember_column(struct plan_ctx *c, const char *schema, const char *table,
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

static int require_table(struct plan_ctx *c, const struct mig_op *op, const char *name)
{
    if (!c->cat || table_exists(c, op->schema, name))
        return 0;
    return op_error(c, op, "table \"%s.%s\" does not exist", op->schema, name);
}

static int require_column(struct plan_ctx *c, const struct mig_op *op, const char *table,
                          const char *col)
{
    if (!c->cat || column_type(c, op->schema, table, col))
        return 0;
    return op_error(c, op, "column \"%s\" does not exist in table \"%s.%s\"", col, op->schema, table);
}

static int require_no_column(struct plan_ctx *c, const struct mig_op *op, const char *table,
                             const char *col)
{
    if (!c->cat || !column_type(c, op->schema, table, col))
        return 0;
    return op_error(c, op, "column \"%s\" already exists in table \"%s.%s\"; pick another name",
                    col, op->schema, table);
}

static int require_key(struct plan_ctx *c, const struct mig_op *op, const char *table)
{
    const struct mig_cat_table *t = table_of(c, op->schema, table);
    if (!c->cat || !t || t->npk > 0)
        return 0;
    return op_error(c, op, "table \"%s.%s\" has no primary key (or unique index over NOT NULL "
                    "columns); the backfill walks rows in key order and cannot resume without one. "
                    "Add a primary key first", op->schema, table);
}

/* ---- small SQL builders --------------------------------------------------- */

static char *sqlf_table(const struct mig_op *op, const char *table, const char *fmt_after)
{
    struct mig_str s = {0};
    mig_str_add(&s, "ALTER TABLE ");
    mig_str_qname(&s, op->schema, table);
    mig_str_add(&s, fmt_after);
    return mig_str_take(&s);
}

static void add_alter(struct mig_steps *l, const struct mig_op *op, const char *table,
                      const char *action, const char *ident, const char *tail)
{
    struct mig_str s = {0};
    mig_str_add(&s, "ALTER TABLE ");
    mig_str_qname(&s, op->schema, table);
    mig_str_addf(&s, " %s ", action);
    mig_str_ident(&s, ident);
    mig_str_add(&s, tail);
    mig_steps_add(l, op->index, MIG_STEP_TXN, mig_str_take(&s));
}

static void add_not_null_check(struct plan_ctx *c, const struct mig_op *op, const char *table,
                               const char *col)
{
    char cname[80];
    object_name(cname, sizeof cname, "nn", op, -1, c->m->name);
    struct mig_str s = {0};
    mig_str_add(&s, "ALTER TABLE ");
    mig_str_qname(&s, op->schema, table);
    mig_str_add(&s, " ADD CONSTRAINT ");
    mig_str_ident(&s, cname);
    mig_str_add(&s, " CHECK (");
    mig_str_ident(&s, col);
    mig_str_add(&s, " IS NOT NULL) NOT VALID");
    mig_steps_add(&c->p->expand, op->index, MIG_STEP_TXN, mig_str_take(&s));
    add_alter(&c->p->validate, op, table, "VALIDATE CONSTRAINT", cname, "");
    /* SET NOT NULL skips its table scan when a valid CHECK (col IS NOT NULL) exists. */
    add_alter(&c->p->contract, op, table, "ALTER COLUMN", col, " SET NOT NULL");
    add_alter(&c->p->contract, op, table, "DROP CONSTRAINT", cname, "");
}

static void add_comment(struct plan_ctx *c, const struct mig_op *op, const char *table,
                        const char *col, const char *comment)
{
    struct mig_str s = {0};
    mig_str_add(&s, "COMMENT ON COLUMN ");
    mig_str_qname(&s, op->schema, table);
    mig_str_add(&s, ".");
    mig_str_ident(&s, col);
    mig_str_add(&s, " IS ");
    mig_str_literal(&s, comment);
    mig_steps_add(&c->p->expand, op->index, MIG_STEP_TXN, mig_str_take(&s));
}

static char *index_sql(const char *schema, const char *table, const char *name, int unique,
                       const char *method, char *const *cols, size_t ncols, const char *swap_from,
                       const char *swap_to, const char *where)
{
    struct mig_str s = {0};
    mig_str_addf(&s, "CREATE %sINDEX CONCURRENTLY ", unique ? "UNIQUE " : "");
    mig_str_ident(&s, name);
    mig_str_add(&s, " ON ");
    mig_str_qname(&s, schema, table);
    mig_str_add(&s, " USING ");
    mig_str_ident(&s, method ? method : "btree");
    mig_str_add(&s, " (");
    for (size_t i = 0; i < ncols; i++) {
        if (i)
            mig_str_add(&s, ", ");
        int swap = swap_from && strcmp(cols[i], swap_from) == 0;
        mig_str_ident(&s, swap ? swap_to : cols[i]);
    }
    mig_str_add(&s, ")");
    if (where)
        mig_str_addf(&s, " WHERE (%s)", where);
    return mig_str_take(&s);
}

static char *drop_index_sql(const char *schema, const char *name, int concurrently)
{
    struct mig_str s = {0};
    mig_str_addf(&s, "DROP INDEX %sIF EXISTS ", concurrently ? "CONCURRENTLY " : "");
    mig_str_qname(&s, schema, name);
    return mig_str_take(&s);
}

/* CREATE INDEX CONCURRENTLY that fails leaves an INVALID index behind; the
 * step carries the DROP that lets the engine retry it once. */
static void add_index_build(struct mig_steps *l, const struct mig_op *op, const char *schema,
                            const char *name, char *create_sql)
{
    mig_steps_add(l, op->index, MIG_STEP_ALONE, create_sql);
    mig_steps_set_cleanup(l, drop_index_sql(schema, name, 1));
}

static int index_uses(const struct mig_cat_index *ix, const char *col)
{
    for (size_t k = 0; k < ix->ncols; k++)
        if (strcmp(ix->cols[k], col) == 0)
            return 1;
    return 0;
}

/* At contract, the temporary index `tmp` or constraint `tmp` of `table`
 * takes the name `name`. */
static void rename_at_contract(struct plan_ctx *c, const struct mig_op *op, const char *table, int index,
                               const char *tmp, const char *name)
{
    struct mig_str s = {0};
    mig_str_add(&s, index ? "ALTER INDEX " : "ALTER TABLE ");
    mig_str_qname(&s, op->schema, index ? tmp : table);
    if (!index) {
        mig_str_add(&s, " RENAME CONSTRAINT ");
        mig_str_ident(&s, tmp);
    } else {
        mig_str_add(&s, " RENAME");
    }
    mig_str_add(&s, " TO ");
    mig_str_ident(&s, name);
    mig_steps_add(&c->p->contract, op->index, MIG_STEP_TXN, mig_str_take(&s));
}

/* Rebuilds every index on `from` over `to` (CONCURRENTLY, during expand) and
 * at contract gives it back the original name, or re-attaches the UNIQUE
 * constraint it backed. */
static void copy_indexes(struct plan_ctx *c, const struct mig_op *op, const char *table,
                         const char *from, const char *to)
{
    const struct mig_cat_table *t = table_of(c, op->schema, table);
    for (size_t i = 0; t && i < t->nidx; i++) {
        const struct mig_cat_index *ix = &t->idx[i];
        /* Other indexes on the column were refused before (refuse_uncarried_dependents). */
        if (!ix->simple || !index_uses(ix, from))
            continue;
        char tmp[80];
        object_name(tmp, sizeof tmp, "ix", op, (int)i, c->m->name);
        add_index_build(&c->p->expand, op, op->schema, tmp,
                        index_sql(op->schema, table, tmp, ix->unique, ix->method, ix->cols, ix->ncols,
                                  from, to, NULL));
        carried(c, op, "index \"%s\": built CONCURRENTLY on \"%s\" at expand, given back its name at contract",
                ix->name, to);
        if (ix->constraint) {
            struct mig_str s = {0};
            mig_str_add(&s, "ALTER TABLE ");
            mig_str_qname(&s, op->schema, table);
            mig_str_add(&s, " ADD CONSTRAINT ");
            mig_str_ident(&s, ix->constraint);
            mig_str_add(&s, " UNIQUE USING INDEX ");
            mig_str_ident(&s, tmp);
            mig_steps_add(&c->p->contract, op->index, MIG_STEP_TXN, mig_str_take(&s));
        } else {
            rename_at_contract(c, op, table, 1, tmp, ix->name);
        }
    }
}

/* Indexes with expressions, predicates, INCLUDE, operator classes or any
 * access method, and CHECK constraints: the catalog's rehearsal gave their
 * definitions over `to` (Postgres printed them), see migration_dependents.h. */
static void copy_rehearsed(struct plan_ctx *c, const struct mig_op *op, const char *table, const char *from,
                           const char *to)
{
    const struct mig_cat_table *t = table_of(c, op->schema, table);
    for (size_t i = 0; t && i < t->ndeps; i++) {
        const struct mig_cat_dep *d = &t->deps[i];
        if (strcmp(d->column, from) != 0 || d->kind == MIG_DEP_VIEW || !d->carry)
            continue;
        char tmp[80];
        const struct mig_cat_index *ix = d->kind == MIG_DEP_INDEX ? mig_catalog_index(t, d->name) : NULL;
        object_name(tmp, sizeof tmp, ix ? "ix" : "cc", op, ix ? (int)(ix - t->idx) : (int)i, c->m->name);
        struct mig_str s = {0};
        if (ix) {
            mig_str_addf(&s, "CREATE %sINDEX CONCURRENTLY ", ix->unique ? "UNIQUE " : "");
            mig_str_ident(&s, tmp);
            mig_str_add(&s, " ON ");
            mig_str_qname(&s, op->schema, table);
            mig_str_addf(&s, " %s", d->carry);
            add_index_build(&c->p->expand, op, op->schema, tmp, mig_str_take(&s));
            carried(c, op, "index \"%s\": built CONCURRENTLY on \"%s\" at expand from its definition, given back "
                    "its name at contract", ix->name, to);
        } else {
            mig_str_add(&s, "ALTER TABLE ");
            mig_str_qname(&s, op->schema, table);
            mig_str_add(&s, " ADD CONSTRAINT ");
            mig_str_ident(&s, tmp);
            mig_str_addf(&s, " %s%s", d->carry, d->validated ? " NOT VALID" : "");
            mig_steps_add(&c->p->expand, op->index, MIG_STEP_TXN, mig_str_take(&s));
            if (d->validated)
                add_alter(&c->p->validate, op, table, "VALIDATE CONSTRAINT", tmp, "");
            carried(c, op, "CHECK constraint \"%s\": added NOT VALID on \"%s\" at expand, validated after the "
                    "backfill, renamed at contract", d->name, to);
        }
        rename_at_contract(c, op, table, ix != NULL, tmp, d->name);
    }
}

/* Views and materialized views reading the column: dropped in the contract
 * before the column (newest first), created again after the second column
 * has the column's name (oldest first) from the definitions read at start,
 * with their options, grants, comments, owner and indexes. */
static int carry_views(struct plan_ctx *c, const struct mig_op *op, const char *table, const char *from,
                       struct mig_steps *drops, struct mig_steps *creates)
{
    const struct mig_cat_table *t = table_of(c, op->schema, table);
    const struct mig_cat_dep *v[64];
    size_t nv = 0;
    for (size_t i = 0; t && i < t->ndeps; i++) {
        const struct mig_cat_dep *d = &t->deps[i];
        if (strcmp(d->column, from) != 0 || d->kind != MIG_DEP_VIEW || !d->carry)
            continue;
        for (size_t k = 0; k < c->nviews; k++)
            if (!strcmp(c->views[k], d->name))
                return op_error(c, op, "view %s reads columns of two operations that change a type; split the "
                                "migration in two", d->name);
        if (nv >= sizeof v / sizeof v[0] || c->nviews >= sizeof c->views / sizeof c->views[0])
            return op_error(c, op, "too many views read column \"%s\"", from);
        size_t at = nv++;
        while (at > 0 && v[at - 1]->oid > d->oid) {
            v[at] = v[at - 1];
            at--;
        }
        v[at] = d;
        c->views[c->nviews++] = d->name;
    }
    for (size_t i = nv; i-- > 0;)
        mig_steps_add(drops, op->index, MIG_STEP_TXN, strdup(v[i]->carry_drop));
    for (size_t i = 0; i < nv; i++) {
        mig_steps_add(creates, op->index, MIG_STEP_TXN, strdup(v[i]->carry));
        carried(c, op, "%s: dropped at contract before the column, created again over the new column in the "
                "same transaction with its options, grants, comments and owner%s", v[i]->describe,
                strncmp(v[i]->describe, "materialized", 12) == 0 ? " (and indexes; its query runs inside the "
                "contract)" : "");
    }
    return 0;
}

static void copy_foreign_keys(struct plan_ctx *c, const struct mig_op *op, const char *table,
                              const char *from, const char *to)
{
    const struct mig_cat_table *t = table_of(c, op->schema, table);
    for (size_t i = 0; t && i < t->nfk; i++) {
        const struct mig_cat_fkey *f = &t->fk[i];
        if (strcmp(f->column, from) != 0)
            continue;
        char tmp[80];
        object_name(tmp, sizeof tmp, "fk", op, (int)i, c->m->name);
        carried(c, op, "foreign key \"%s\": added NOT VALID on \"%s\" at expand, validated after the backfill, "
                "renamed at contract", f->name, to);
        struct mig_str s = {0};
        mig_str_add(&s, "ALTER TABLE ");
        mig_str_qname(&s, op->schema, table);
        mig_str_add(&s, " ADD CONSTRAINT ");
        mig_str_ident(&s, tmp);
        mig_str_add(&s, " FOREIGN KEY (");
        mig_str_ident(&s, to);
        /* ref_table is regclass output: Postgres already quoted it. */
        mig_str_addf(&s, ") REFERENCES %s (", f->ref_table);
        mig_str_ident(&s, f->ref_column);
        mig_str_addf(&s, ") ON DELETE %s ON UPDATE %s NOT VALID", mig_fk_action(f->on_delete),
                     mig_fk_action(f->on_update));
        mig_steps_add(&c->p->expand, op->index, MIG_STEP_TXN, mig_str_take(&s));
        add_alter(&c->p->validate, op, table, "VALIDATE CONSTRAINT", tmp, "");
        rename_at_contract(c, op, table, 0, tmp, f->name);
    }
}

/* Foreign keys of other tables that point at `from` are re-pointed at `to`.
 * They are added after the backfill (validate phase): earlier, a new
 * referencing row could point at a row whose new column is still NULL. */
static void copy_incoming_foreign_keys(struct plan_ctx *c, const struct mig_op *op, const char *table,
                                       const char *from, const char *to, struct mig_steps *contract_before_drop,
                                       struct mig_steps *contract_after_drop)
{
    const struct mig_cat_table *t = table_of(c, op->schema, table);
    for (size_t i = 0; t && i < t->nin_fk; i++) {
        const struct mig_cat_fkey *f = &t->in_fk[i];
        if (strcmp(f->column, from) != 0)
            continue;
        char tmp[80];
        object_name(tmp, sizeof tmp, "rf", op, (int)i, c->m->name);
        carried(c, op, "foreign key \"%s\" pointing at the column: re-pointed at \"%s\" after the backfill "
                "(NOT VALID, then validated), renamed at contract", f->name, to);
        struct mig_str s = {0};
        /* ref_table is regclass output: Postgres already quoted it. */
        mig_str_addf(&s, "ALTER TABLE %s ADD CONSTRAINT ", f->ref_table);
        mig_str_ident(&s, tmp);
        mig_str_add(&s, " FOREIGN KEY (");
        mig_str_ident(&s, f->ref_column);
        mig_str_add(&s, ") REFERENCES ");
        mig_str_qname(&s, op->schema, table);
        mig_str_add(&s, " (");
        mig_str_ident(&s, to);
        mig_str_addf(&s, ") ON DELETE %s ON UPDATE %s NOT VALID", mig_fk_action(f->on_delete),
                     mig_fk_action(f->on_update));
        mig_steps_add(&c->p->validate, op->index, MIG_STEP_TXN, mig_str_take(&s));
        struct mig_str v = {0}, d = {0}, r = {0}, rb = {0};
        mig_str_addf(&v, "ALTER TABLE %s VALIDATE CONSTRAINT ", f->ref_table);
        mig_str_ident(&v, tmp);
        mig_steps_add(&c->p->validate, op->index, MIG_STEP_TXN, mig_str_take(&v));
        mig_str_addf(&d, "ALTER TABLE %s DROP CONSTRAINT ", f->ref_table);
        mig_str_ident(&d, f->name);
        mig_steps_add(contract_before_drop, op->index, MIG_STEP_TXN, mig_str_take(&d));
        mig_str_addf(&r, "ALTER TABLE %s RENAME CONSTRAINT ", f->ref_table);
        mig_str_ident(&r, tmp);
        mig_str_add(&r, " TO ");
        mig_str_ident(&r, f->name);
        mig_steps_add(contract_after_drop, op->index, MIG_STEP_TXN, mig_str_take(&r));
        mig_str_addf(&rb, "ALTER TABLE %s DROP CONSTRAINT IF EXISTS ", f->ref_table);
        mig_str_ident(&rb, tmp);
        mig_steps_add(&c->p->rollback, op->index, MIG_STEP_TXN, mig_str_take(&rb));
    }
}

/* ---- dual-write trigger --------------------------------------------------- */

static void declare_columns(struct plan_ctx *c, struct mig_str *s, const struct mig_op *op,
                            const char *table, const char *extra, const char *extra_type)
{
    const struct mig_cat_table *t = table_of(c, op->schema, table);
    for (size_t i = 0; t && i < t->ncols; i++) {
        mig_str_add(s, "  ");
        mig_str_ident(s, t->cols[i].name);
        mig_str_addf(s, " %s := NEW.", t->cols[i].type);
        mig_str_ident(s, t->cols[i].name);
        mig_str_add(s, ";\n");
    }
    for (size_t i = 0; i < c->nadded; i++) {
        const struct vcol *v = &c->added[i];
        if (strcmp(v->schema, op->schema) || strcmp(v->table, table) || (extra && !strcmp(v->name, extra)))
            continue;
        mig_str_add(s, "  ");
        mig_str_ident(s, v->name);
        mig_str_addf(s, " %s := NEW.", v->type);
        mig_str_ident(s, v->name);
        mig_str_add(s, ";\n");
    }
    if (!t && !c->cat && op->from && op->kind == MIG_RENAME_COLUMN) {
        mig_str_add(s, "  ");
        mig_str_ident(s, op->from);
        mig_str_add(s, " <type of old column> := NEW.");
        mig_str_ident(s, op->from);
        mig_str_add(s, ";\n");
    }
    if (extra) {
        mig_str_add(s, "  ");
        mig_str_ident(s, extra);
        mig_str_addf(s, " %s := NEW.", extra_type);
        mig_str_ident(s, extra);
        mig_str_add(s, ";\n");
    }
}

/* CREATE FUNCTION pgtandem.fname() for a trigger, its body dollar-quoted
 * with a tag that occurs nowhere in it: the body holds the author's
 * expressions and every column name of the table, any of which may contain
 * "$pgtandem$". Takes ownership of body. */
static char *trigger_function(const char *fname, char *body)
{
    if (!body)
        return NULL;
    char tag[32];
    for (int i = 0;; i++) {
        snprintf(tag, sizeof tag, i ? "$pgtandem%d$" : "$pgtandem$", i);
        if (!strstr(body, tag))
            break;
    }
    struct mig_str s = {0};
    mig_str_add(&s, "CREATE OR REPLACE FUNCTION ");
    mig_str_qname(&s, "pgtandem", fname);
    mig_str_addf(&s, "() RETURNS trigger LANGUAGE plpgsql AS %s\n%s%s", tag, body, tag);
    free(body);
    return mig_str_take(&s);
}

struct dual_write {
    const char *table, *old_col, *new_col, *new_type, *up, *down;
    const char *down_name;  /* alter_column: `down` names the new value by the column's name */
};

/* The locals every trigger of this file declares for writer_shape. */
static void declare_shape(struct mig_str *s)
{
    mig_str_add(s, "  pgt_schema name;\n  pgt_new_shape boolean;\n  pgt_run boolean;\n");
}

/* The tandem rule's one question: which shape wrote this row? The proxy
 * puts the writer's shape first on its search_path (the version schema for
 * the new release, the old shape's schema for everyone else, both for the
 * whole migration, switched and reverted sessions included), so the first
 * schema on the search_path answers it. A session routed to neither writes
 * the base table itself (it bypasses the proxy and the views): with
 * pgtandem.version equal to the migration's name it is a new-shape writer;
 * without, what it wrote decides (bypass_insert, bypass_update: SQL
 * conditions, true when the write gave the new shape's columns and not the
 * old one's), and anything else is an old-shape write. Sets the declared
 * pgt_new_shape. */
static void writer_shape(struct plan_ctx *c, struct mig_str *s, const char *bypass_insert,
                         const char *bypass_update)
{
    char vname[80], oname[80];
    snprintf(vname, sizeof vname, MIG_VERSION_SCHEMA_FMT, c->m->name);
    snprintf(oname, sizeof oname, MIG_OLD_SCHEMA_FMT, c->m->name);
    mig_str_add(s, "  pgt_schema := (current_schemas(false))[1];\n  IF pgt_schema = ");
    mig_str_literal(s, vname);
    mig_str_add(s, " THEN\n    pgt_new_shape := true;\n  ELSIF pgt_schema = ");
    mig_str_literal(s, oname);
    mig_str_add(s, " THEN\n    pgt_new_shape := false;\n  ELSIF coalesce(current_setting('" MIG_VERSION_GUC
                "', true), '') = ");
    mig_str_literal(s, c->m->name);
    mig_str_addf(s, " THEN\n    pgt_new_shape := true;\n  ELSIF TG_OP = 'INSERT' THEN\n"
                 "    pgt_new_shape := coalesce(%s, false);\n  ELSE\n    pgt_new_shape := coalesce(%s, false);\n"
                 "  END IF;\n", bypass_insert, bypass_update);
}

/* "NEW.col IS NOT NULL" and the like, quoted. */
static char *new_is(const char *col, const char *test)
{
    struct mig_str s = {0};
    mig_str_add(&s, "NEW.");
    mig_str_ident(&s, col);
    mig_str_add(&s, test);
    return mig_str_take(&s);
}

/* "NEW.col IS DISTINCT FROM OLD.col" (changed) or its negation. */
static char *changed(const char *col, int yes)
{
    struct mig_str s = {0};
    mig_str_add(&s, "NEW.");
    mig_str_ident(&s, col);
    mig_str_add(&s, yes ? " IS DISTINCT FROM OLD." : " IS NOT DISTINCT FROM OLD.");
    mig_str_ident(&s, col);
    return mig_str_take(&s);
}

static char *both(char *a, char *b)
{
    struct mig_str s = {0};
    mig_str_addf(&s, "(%s AND %s)", a ? a : "false", b ? b : "false");
    free(a);
    free(b);
    return mig_str_take(&s);
}

/* Is name a column of the table as the triggers see it (today's columns
 * and those earlier operations add)? Without a catalog every name is
 * taken for one (the offline plan only shows the SQL). */
static int is_column(const struct plan_ctx *c, const struct mig_op *op, const char *table, const char *name)
{
    return !c->cat || column_type(c, op->schema, table, name) != NULL;
}

/* Sets the declared pgt_run: does a direction whose expression is `expr`,
 * filling `target`, run on this write? On every INSERT of its shape; on an
 * UPDATE when a column the expression reads changed, or when `target` is
 * still NULL (a row the backfill has not reached). An UPDATE that changes
 * nothing the expression reads keeps what the row holds, so a round trip
 * that does not give back the same text (jsonb normalises spacing, a cast
 * rounds) does not rewrite the other release's value on every unrelated
 * write. A name of the expression equal to `renamed` reads the column `as`
 * (alter_column's `down` reads the new value by the column's name). */
static void direction_runs(struct plan_ctx *c, struct mig_str *s, const struct mig_op *op, const char *table,
                           const char *indent, const char *expr, const char *target, const char *renamed,
                           const char *as)
{
    char **names = NULL;
    size_t n = 0;
    int star = 0;
    int known = sql_fragment_columns(expr, &names, &n, &star) == SQL_FRAGMENT_OK && !star;
    mig_str_addf(s, "%sIF TG_OP = 'INSERT' THEN\n%s  pgt_run := true;\n%sELSE\n%s  pgt_run := ", indent, indent,
                 indent, indent);
    if (!known) {
        mig_str_add(s, "true");
    } else {
        mig_str_add(s, "NEW.");
        mig_str_ident(s, target);
        mig_str_add(s, " IS NULL");
        for (size_t i = 0; i < n; i++) {
            const char *col = renamed && !strcmp(names[i], renamed) ? as : names[i];
            if (!is_column(c, op, table, col))
                continue;
            mig_str_add(s, "\n");
            mig_str_addf(s, "%s    OR NEW.", indent);
            mig_str_ident(s, col);
            mig_str_add(s, " IS DISTINCT FROM OLD.");
            mig_str_ident(s, col);
        }
    }
    mig_str_addf(s, ";\n%sEND IF;\n", indent);
    sql_fragment_free_names(names, n);
}

/* The tandem rule for a column with a second column: a write from the old
 * shape sets the new column to up(row), a write from the new shape sets the
 * old column to down(row) (when direction_runs says); a direction never runs on its own
 * target's write, so nothing loops and nothing undoes the other release's
 * write. A NULL source is no exception (a fill value fills). The backfill
 * session sets pgtandem.backfill=on and the trigger's WHEN clause skips it;
 * triggers only assign NEW, so they never recurse. */
static char *dual_write_function(struct plan_ctx *c, const struct mig_op *op, const char *fname,
                                 const struct dual_write *d)
{
    struct mig_str s = {0};
    mig_str_add(&s, "DECLARE\n");
    declare_columns(c, &s, op, d->table, d->new_col, d->new_type);
    declare_shape(&s);
    mig_str_add(&s, "BEGIN\n");
    char *ins = both(new_is(d->new_col, " IS NOT NULL"), new_is(d->old_col, " IS NULL"));
    char *upd = both(changed(d->new_col, 1), changed(d->old_col, 0));
    writer_shape(c, &s, ins ? ins : "false", upd ? upd : "false");
    free(ins);
    free(upd);
    mig_str_add(&s, "  IF pgt_new_shape THEN\n");
    direction_runs(c, &s, op, d->table, "    ", d->down, d->old_col, d->down_name, d->new_col);
    mig_str_add(&s, "    IF pgt_run THEN\n");
    if (d->down_name) {
        /* An inner block rebinds the column's name to the new value. */
        mig_str_add(&s, "      DECLARE ");
        mig_str_ident(&s, d->down_name);
        mig_str_addf(&s, " %s := NEW.", d->new_type);
        mig_str_ident(&s, d->new_col);
        mig_str_add(&s, "; BEGIN\n  ");
    }
    mig_str_add(&s, "      NEW.");
    mig_str_ident(&s, d->old_col);
    mig_str_addf(&s, " := (%s);\n", d->down);
    if (d->down_name)
        mig_str_add(&s, "      END;\n");
    mig_str_add(&s, "    END IF;\n  ELSE\n");
    direction_runs(c, &s, op, d->table, "    ", d->up, d->new_col, NULL, NULL);
    mig_str_add(&s, "    IF pgt_run THEN\n      NEW.");
    mig_str_ident(&s, d->new_col);
    mig_str_addf(&s, " := (%s);\n    END IF;\n  END IF;\n  RETURN NEW;\nEND\n", d->up);
    return trigger_function(fname, mig_str_take(&s));
}

static char *trigger_sql(const struct mig_op *op, const char *table, const char *tname,
                         const char *fname)
{
    struct mig_str s = {0};
    mig_str_add(&s, "CREATE TRIGGER ");
    mig_str_ident(&s, tname);
    mig_str_add(&s, " BEFORE INSERT OR UPDATE ON ");
    mig_str_qname(&s, op->schema, table);
    mig_str_add(&s, " FOR EACH ROW WHEN (current_setting('" MIG_BACKFILL_GUC
                "', true) IS DISTINCT FROM 'on') EXECUTE FUNCTION ");
    mig_str_qname(&s, "pgtandem", fname);
    mig_str_add(&s, "()");
    return mig_str_take(&s);
}

static void drop_trigger_steps(struct mig_steps *l, const struct mig_op *op, const char *table,
                               const char *tname, const char *fname)
{
    struct mig_str s = {0};
    mig_str_add(&s, "DROP TRIGGER IF EXISTS ");
    mig_str_ident(&s, tname);
    mig_str_add(&s, " ON ");
    mig_str_qname(&s, op->schema, table);
    mig_steps_add(l, op->index, MIG_STEP_TXN, mig_str_take(&s));
    struct mig_str f = {0};
    mig_str_add(&f, "DROP FUNCTION IF EXISTS ");
    mig_str_qname(&f, "pgtandem", fname);
    mig_str_add(&f, "()");
    mig_steps_add(l, op->index, MIG_STEP_TXN, mig_str_take(&f));
}

/* Installs the trigger at expand and removes it at contract and rollback. A
 * rollback of a rename_table runs before the table gets its old name back, so
 * the trigger is addressed by the name the table has during the migration. */
static void install_trigger(struct plan_ctx *c, const struct mig_op *op, const char *table,
                            char *function_sql)
{
    char fname[80], tname[80];
    snprintf(fname, sizeof fname, "%s_%d", c->m->name, op->index);
    object_name(tname, sizeof tname, "tg", op, -1, c->m->name);
    mig_steps_add(&c->p->expand, op->index, MIG_STEP_TXN, function_sql);
    mig_steps_add(&c->p->expand, op->index, MIG_STEP_TXN, trigger_sql(op, table, tname, fname));
    drop_trigger_steps(&c->p->contract, op, table, tname, fname);
    drop_trigger_steps(&c->p->rollback, op, table, tname, fname);
}

static void trigger_names(const struct plan_ctx *c, const struct mig_op *op, char *fname, size_t n)
{
    snprintf(fname, n, "%s_%d", c->m->name, op->index);
}

/* ---- backfill pieces ------------------------------------------------------ */

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

static void remember_expression(struct plan_ctx *c, struct mig_bf_table *b, const struct mig_op *op,
                                const char *column, const char *type, const char *up, const char *pending)
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
    if (!x->what || !x->column || !x->up || !x->pending)
        c->p->expand.oom = 1;
}

/* new = up(old) for rows the application has not written since expand: the
 * trigger fills the new column on every write after expand, so a row whose
 * new column is still NULL while up would give it a value has never been
 * written. old_col is given when up is the plain copy or cast of it, which
 * is NULL exactly when old_col is: the cheaper test then; old_col ==
 * new_col for a default that fills what is NULL (evaluated once a row). */
static void add_backfill(struct plan_ctx *c, const struct mig_op *op, const char *table,
                         const char *new_col, const char *type, const char *old_col, const char *up, int verify)
{
    struct mig_bf_table *b = bf_table(c, op, table);
    if (!b)
        return;
    struct mig_str set = {0}, pend = {0}, mis = {0};
    mig_str_ident(&set, new_col);
    mig_str_add(&set, " = CASE WHEN ");
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
    remember_expression(c, b, op, new_col, type, up, pending);
    mig_str_addf(&set, "%s THEN (%s) ELSE ", pending, up);
    mig_str_ident(&set, new_col);
    mig_str_add(&set, " END");
    char *setv = mig_str_take(&set);
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
    free(wrapped);
    free(pending);
}

/* ---- operations ----------------------------------------------------------- */

static const struct mig_cat_index *index_of_constraint(const struct mig_cat_table *t, const char *name)
{
    for (size_t i = 0; i < t->nidx; i++)
        if (t->idx[i].constraint && !strcmp(t->idx[i].constraint, name))
            return &t->idx[i];
    return NULL;
}

/* Why a dependent of a column cannot follow a change of its type, and what
 * the user can do instead. NULL: it follows. */
static const char *uncarried_reason(const struct mig_cat_table *t, const struct mig_cat_dep *d)
{
    const struct mig_cat_index *ix;
    if (d->refusal)
        return d->refusal;
    if (d->carry)
        return NULL;
    switch (d->kind) {
    case MIG_DEP_VIEW:
        return "Postgres cannot change the type of a column a view reads (an offline ALTER COLUMN ... TYPE "
               "refuses the same way); drop the view in an earlier migration and re-create it after this one "
               "completes, or keep the column's type";
    case MIG_DEP_INDEX:
        ix = mig_catalog_index(t, d->name);
        if (ix && ix->simple)
            return NULL;
        return "it has an expression, a predicate, INCLUDE columns, a non-default operator class or "
               "ordering, which pgtandem does not rebuild on the new column; drop it (drop_index) and "
               "re-create it with create_index after this migration completes";
    case MIG_DEP_CONSTRAINT:
        if (d->contype == 'f')
            return NULL;   /* single-column keys are moved; others are refused by the caller */
        ix = d->contype == 'u' ? index_of_constraint(t, d->name) : NULL;
        if (ix && ix->simple)
            return NULL;
        return "pgtandem does not re-create CHECK, EXCLUDE or such UNIQUE constraints on the new column; drop "
               "it in an earlier migration and add it again with create_constraint after this one completes";
    case MIG_DEP_OTHER:
        return "pgtandem does not move triggers, policies, extended statistics, sequences or generated "
               "columns to the new column; remove it first and re-create it after this migration completes";
    }
    return NULL;
}

/* drop_column runs the offline DROP COLUMN at contract: what goes with the
 * column offline goes with it online; what makes it refuse must be refused
 * before anything starts. */
static const char *undroppable_reason(const struct mig_cat_dep *d)
{
    /* Indexes and constraints of the table go with the column offline, even
     * multi-column ones; objects outside the table need CASCADE. */
    if (d->kind == MIG_DEP_INDEX || (d->kind == MIG_DEP_CONSTRAINT && !d->foreign) ||
        (d->kind == MIG_DEP_OTHER && d->deptype != 'n'))
        return NULL;
    return "an offline DROP COLUMN refuses the same way (only CASCADE would take it along); drop or change it "
           "in an earlier migration first";
}

static int fkey_carried(const struct mig_cat_table *t, const char *name)
{
    for (size_t i = 0; i < t->nfk; i++)
        if (!strcmp(t->fk[i].name, name))
            return 1;
    for (size_t i = 0; i < t->nin_fk; i++)
        if (!strcmp(t->in_fk[i].name, name))
            return 1;
    return 0;
}

/* The second column is a plain column: an identity column would lose its
 * sequence and a generated column its expression (an offline ALTER COLUMN
 * ... TYPE keeps both, rewriting the table under an ACCESS EXCLUSIVE lock). */
static int refuse_identity_or_generated(struct plan_ctx *c, const struct mig_op *op, const char *table,
                                        const char *col)
{
    const struct mig_cat_column *oc = mig_catalog_column(table_of(c, op->schema, table), col);
    if (oc && oc->identity)
        return op_error(c, op, "column \"%s\" of \"%s.%s\" is an identity column (GENERATED %s AS IDENTITY), "
                        "which a second column cannot carry (it would end as a plain column without its "
                        "sequence); keep its type, or add a new column with add_column, fill it, and drop this "
                        "one in a later migration", col, op->schema, table,
                        oc->identity == 'a' ? "ALWAYS" : "BY DEFAULT");
    if (oc && oc->generated)
        return op_error(c, op, "column \"%s\" of \"%s.%s\" is a generated column (GENERATED ALWAYS AS (%s) "
                        "STORED), which a second column cannot carry (the dual-write trigger cannot write it); "
                        "keep its type, or drop it with drop_column and add it again with the new type after "
                        "this migration completes", col, op->schema, table,
                        oc->default_expr ? oc->default_expr : "...");
    return 0;
}

/* Validation before any DDL: every object depending on `col` must either
 * follow the second column (or the drop) the way an offline ALTER TABLE
 * takes it along, or the operation is refused, naming it. */
static int refuse_uncarried_dependents(struct plan_ctx *c, const struct mig_op *op, const char *table,
                                       const char *col, int dropping)
{
    if (!dropping && refuse_identity_or_generated(c, op, table, col))
        return -1;
    const struct mig_cat_table *t = table_of(c, op->schema, table);
    for (size_t i = 0; t && i < t->ndeps; i++) {
        const struct mig_cat_dep *d = &t->deps[i];
        if (strcmp(d->column, col) != 0)
            continue;
        const char *why = dropping ? undroppable_reason(d) : uncarried_reason(t, d);
        if (!why && !dropping && d->kind == MIG_DEP_CONSTRAINT && d->contype == 'f' && !fkey_carried(t, d->name))
            why = "only single-column foreign keys are moved to the new column; drop it in an earlier "
                  "migration and add it again after this one completes";
        if (why)
            return op_error(c, op, "%s depends on column \"%s\" of \"%s.%s\" and cannot be carried: %s",
                            d->describe, col, op->schema, table, why);
    }
    return 0;
}

static int column_privilege(const char *p)
{
    return !strcmp(p, "SELECT") || !strcmp(p, "INSERT") || !strcmp(p, "UPDATE") || !strcmp(p, "REFERENCES");
}

/* "PRIVILEGE\tgrantee\tt|f" from the catalog (grantee "" is PUBLIC).
 * Returns 1 for a column privilege. */
static int parse_grant(const char *text, char *priv, size_t privlen, char *grantee, size_t glen, char *grantable)
{
    const char *t1 = strchr(text, '\t');
    const char *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
    if (!t2)
        return 0;
    snprintf(priv, privlen, "%.*s", (int)(t1 - text), text);
    snprintf(grantee, glen, "%.*s", (int)(t2 - t1 - 1), t1 + 1);
    *grantable = t2[1];
    return column_privilege(priv);
}

/* Column privileges and the statistics target are properties of the column:
 * the second column gets them at expand, so they are there when it takes
 * the column's name. */
static void copy_column_properties(struct plan_ctx *c, const struct mig_op *op, const char *table,
                                   const struct mig_cat_column *oc, const char *to)
{
    for (size_t i = 0; i < oc->ngrants; i++) {
        char priv[32], grantee[128], grantable;
        if (!parse_grant(oc->grants[i], priv, sizeof priv, grantee, sizeof grantee, &grantable))
            continue;
        struct mig_str s = {0};
        mig_str_addf(&s, "GRANT %s (", priv);
        mig_str_ident(&s, to);
        mig_str_add(&s, ") ON ");
        mig_str_qname(&s, op->schema, table);
        mig_str_add(&s, " TO ");
        if (grantee[0])
            mig_str_ident(&s, grantee);
        else
            mig_str_add(&s, "PUBLIC");
        if (grantable == 't')
            mig_str_add(&s, " WITH GRANT OPTION");
        mig_steps_add(&c->p->expand, op->index, MIG_STEP_TXN, mig_str_take(&s));
        char what[200];
        snprintf(what, sizeof what, "%s to %s%s", priv, grantee[0] ? grantee : "PUBLIC",
                 grantable == 't' ? " with grant option" : "");
        carried(c, op, "column privilege %s: granted again on \"%s\" at expand", what, to);
    }
    if (oc->stattarget >= 0) {
        char tail[48];
        snprintf(tail, sizeof tail, " SET STATISTICS %d", oc->stattarget);
        add_alter(&c->p->expand, op, table, "ALTER COLUMN", to, tail);
        carried(c, op, "statistics target of \"%s\": set on \"%s\" at expand", oc->name, to);
    }
}

struct shadow_spec {
    const char *table, *from, *to, *type, *up, *down;
    int copy_default, copy_not_null, copy_comment;
    int copy_dependents;    /* indexes and foreign keys */
};

/* Shared by rename_column and alter_column: a real second column kept in sync
 * by a trigger, filled by the backfill, with the old column's indexes, foreign
 * keys, NOT NULL, default and comment copied over. */
static int expand_second_column(struct plan_ctx *c, const struct mig_op *op, const struct shadow_spec *sp,
                                struct mig_steps *deferred)
{
    const char *old_type = column_type(c, op->schema, sp->table, sp->from);
    const char *type = sp->type ? sp->type : (old_type ? old_type : "<type of old column>");
    struct mig_cat_column *oc = mig_catalog_column(table_of(c, op->schema, sp->table), sp->from);
    char up_default[200], down_default[200];
    struct mig_str u = {0}, d = {0};
    mig_str_ident(&u, sp->from);
    if (sp->type)
        mig_str_addf(&u, "::%s", sp->type);
    mig_str_ident(&d, sp->to);
    if (sp->type)
        mig_str_addf(&d, "::%s", old_type ? old_type : "<type of old column>");
    char *ud = mig_str_take(&u), *dd = mig_str_take(&d);
    snprintf(up_default, sizeof up_default, "%s", ud ? ud : "");
    snprintf(down_default, sizeof down_default, "%s", dd ? dd : "");
    free(ud);
    free(dd);
    const char *up = sp->up ? sp->up : up_default;
    const char *down = sp->down ? sp->down : down_default;

    struct mig_str s = {0};
    mig_str_add(&s, "ALTER TABLE ");
    mig_str_qname(&s, op->schema, sp->table);
    mig_str_add(&s, " ADD COLUMN ");
    mig_str_ident(&s, sp->to);
    mig_str_addf(&s, " %s", type);
    mig_steps_add(&c->p->expand, op->index, MIG_STEP_TXN, mig_str_take(&s));
    /* The default is set separately so existing rows keep NULL and stay
     * recognisable to the backfill. */
    if (sp->copy_default && oc && oc->default_expr) {
        carried(c, op, "default %s: set on \"%s\" at expand", oc->default_expr, sp->to);
        struct mig_str ds = {0};
        mig_str_addf(&ds, " SET DEFAULT %s", oc->default_expr);
        char *tail = mig_str_take(&ds);
        add_alter(&c->p->expand, op, sp->table, "ALTER COLUMN", sp->to, tail ? tail : "");
        free(tail);
    }
    /* known from here on: the trigger's conditions name it */
    remember_column(c, op->schema, sp->table, sp->to, type);
    struct dual_write dw = {sp->table, sp->from, sp->to, type, up, down,
                            op->kind == MIG_ALTER_COLUMN ? op->column : NULL};
    char fname[80];
    trigger_names(c, op, fname, sizeof fname);
    install_trigger(c, op, sp->table, dual_write_function(c, op, fname, &dw));
    /* Contract steps that need the old column gone (index and constraint
     * names are reused) are collected aside; the caller appends them after
     * its DROP COLUMN. */
    struct mig_steps contract = c->p->contract;
    c->p->contract = (struct mig_steps){0};
    if (sp->copy_not_null && oc && oc->notnull) {
        add_not_null_check(c, op, sp->table, sp->to);
        carried(c, op, "NOT NULL: a CHECK NOT VALID on \"%s\", validated after the backfill, SET NOT NULL at "
                "contract%s", sp->to, "");
    }
    if (sp->copy_comment && oc && oc->comment) {
        add_comment(c, op, sp->table, sp->to, oc->comment);
        carried(c, op, "comment of \"%s\": set on \"%s\" at expand", sp->from, sp->to);
    }
    if (sp->copy_dependents) {
        if (oc)
            copy_column_properties(c, op, sp->table, oc, sp->to);
        copy_indexes(c, op, sp->table, sp->from, sp->to);
        copy_rehearsed(c, op, sp->table, sp->from, sp->to);
        copy_foreign_keys(c, op, sp->table, sp->from, sp->to);
        copy_incoming_foreign_keys(c, op, sp->table, sp->from, sp->to, &contract, &c->p->contract);
    }
    *deferred = c->p->contract;
    c->p->contract = contract;
    add_backfill(c, op, sp->table, sp->to, type, sp->up ? NULL : sp->from, up, 1);
    return 0;
}

static void append_steps(struct mig_steps *dst, struct mig_steps *src)
{
    for (size_t i = 0; i < src->n; i++) {
        mig_steps_add(dst, src->v[i].op_index, src->v[i].mode, src->v[i].sql);
        if (src->v[i].cleanup)
            mig_steps_set_cleanup(dst, src->v[i].cleanup);
    }
    dst->oom |= src->oom;
    free(src->v);
    memset(src, 0, sizeof *src);
}

static int key_uses(const struct plan_ctx *c, const struct mig_op *op, const char *table, const char *col)
{
    const struct mig_cat_table *t = table_of(c, op->schema, table);
    for (size_t k = 0; t && k < t->npk; k++)
        if (strcmp(t->pk[k], col) == 0)
            return 1;
    return 0;
}

/* The operation's "default": the new column's default, set at expand so
 * writes through the new shape get it while the migration runs (null: the
 * new column has none). */
static void set_new_default(struct plan_ctx *c, const struct mig_op *op, const char *col)
{
    if (!op->has_default || !op->default_expr)
        return;
    struct mig_str ds = {0};
    mig_str_addf(&ds, " SET DEFAULT %s", op->default_expr);
    char *tail = mig_str_take(&ds);
    add_alter(&c->p->expand, op, op->table, "ALTER COLUMN", col, tail ? tail : "");
    free(tail);
}

static int names_column(const char *const *cols, size_t n, const char *col)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(cols[i], col) == 0)
            return 1;
    return 0;
}

/* Does a later operation of the migration build something on `col` of the
 * table (an index, a constraint, another change of the column)? Expressions
 * are matched as text, so a mere mention counts: the cautious answer. */
static int later_op_builds_on(const struct plan_ctx *c, const struct mig_op *op, const char *col)
{
    for (size_t i = (size_t)op->index + 1; i < c->m->nops; i++) {
        const struct mig_op *o = &c->m->ops[i];
        if (!o->table || strcmp(o->schema, op->schema) || strcmp(o->table, op->table))
            continue;
        if ((o->from && !strcmp(o->from, col)) || (o->column && !strcmp(o->column, col)) ||
            names_column((const char *const *)o->columns, o->ncolumns, col) ||
            names_column((const char *const *)o->include, o->ninclude, col) ||
            (o->where && strstr(o->where, col)) || (o->check && strstr(o->check, col)) ||
            (o->up && strstr(o->up, col)) || (o->down && strstr(o->down, col)))
            return 1;
        for (size_t k = 0; k < o->nkeys; k++)
            if (strstr(o->keys[k], col))
                return 1;
    }
    return 0;
}

/* See include/migration_plan.h: a rename that keeps the column's values as
 * they are keeps the original column and renames it at contract. */
static int rename_keeps_original(const struct plan_ctx *c, const struct mig_op *op)
{
    if (op->up || op->down || later_op_builds_on(c, op, op->to))
        return 0;
    if (!op->type)
        return 1;
    const char *old_type = column_type(c, op->schema, op->table, op->from);
    return old_type && strcmp(old_type, op->type) == 0;
}

/* A rename that keeps the values moves no data: the new shape's view shows
 * the column under its new name (view_item), the old shape's under its
 * old one, and the contract renames it in the catalog, as an offline
 * RENAME COLUMN does, so every index, constraint, view, grant, comment,
 * default and statistics target follows it. With "copy": true, a second
 * column under the new name is also kept in step on the table itself (a
 * trigger and a backfill write every row once), for writers that use the
 * base table by the new name while bypassing both shapes' views; the
 * contract drops it and renames the original all the same. */
static int plan_rename_keeping_original(struct plan_ctx *c, const struct mig_op *op)
{
    if (op->copy) {
        struct shadow_spec sp = {op->table, op->from, op->to, NULL, NULL, NULL, 0, 0, 0, 0};
        struct mig_steps deferred = {0};
        if (expand_second_column(c, op, &sp, &deferred) != 0)
            return -1;
        add_alter(&c->p->contract, op, op->table, "DROP COLUMN", op->to, "");
        append_steps(&c->p->contract, &deferred);
        add_alter(&c->p->rollback, op, op->table, "DROP COLUMN IF EXISTS", op->to, "");
    }
    struct mig_str r = {0};
    mig_str_add(&r, " TO ");
    mig_str_ident(&r, op->to);
    char *tail = mig_str_take(&r);
    add_alter(&c->p->contract, op, op->table, "RENAME COLUMN", op->from, tail ? tail : "");
    free(tail);
    if (op->has_default) {
        struct mig_str ds = {0};
        if (op->default_expr)
            mig_str_addf(&ds, " SET DEFAULT %s", op->default_expr);
        else
            mig_str_add(&ds, " DROP DEFAULT");
        char *dt = mig_str_take(&ds);
        add_alter(&c->p->contract, op, op->table, "ALTER COLUMN", op->to, dt ? dt : "");
        free(dt);
    }
    char how[256];
    snprintf(how, sizeof how, "renames column \"%.60s\" to \"%.60s\" at contract%s", op->from, op->to,
             op->copy ? " (a copy column under the new name until then)" : ", moving no data");
    carried(c, op, "%s: its indexes, constraints, views, grants, comment, default and statistics follow it",
            how, "");
    return 0;
}

static void rename_column_twice(struct plan_ctx *c, const struct mig_op *op, const char *name,
                                const char *meanwhile, struct mig_steps *between)
{
    struct mig_str a = {0}, b = {0};
    mig_str_add(&a, " TO ");
    mig_str_ident(&a, meanwhile);
    mig_str_add(&b, " TO ");
    mig_str_ident(&b, name);
    char *ta = mig_str_take(&a), *tb = mig_str_take(&b);
    add_alter(&c->p->contract, op, op->table, "RENAME COLUMN", name, ta ? ta : "");
    append_steps(&c->p->contract, between);
    add_alter(&c->p->contract, op, op->table, "RENAME COLUMN", meanwhile, tb ? tb : "");
    free(ta);
    free(tb);
}

static int plan_rename_column(struct plan_ctx *c, const struct mig_op *op)
{
    if (require_table(c, op, op->table) || require_column(c, op, op->table, op->from) ||
        require_no_column(c, op, op->table, op->to))
        return -1;
    /* Moving no data, it needs no key to walk and may rename a key column. */
    if (rename_keeps_original(c, op) && !op->copy)
        return plan_rename_keeping_original(c, op);
    if (require_key(c, op, op->table))
        return -1;
    if (key_uses(c, op, op->table, op->from))
        return op_error(c, op, "\"%s\" is part of the key of \"%s\"; renaming a key column while changing "
                        "its values (a type, up/down, \"copy\") is not supported; rename it on its own",
                        op->from, op->table);
    if (rename_keeps_original(c, op))
        return plan_rename_keeping_original(c, op);
    if (refuse_uncarried_dependents(c, op, op->table, op->from, 0))
        return -1;
    struct shadow_spec sp = {op->table, op->from, op->to, op->type, op->up, op->down, !op->has_default, 1, 1, 1};
    struct mig_steps deferred = {0};
    if (expand_second_column(c, op, &sp, &deferred) != 0)
        return -1;
    set_new_default(c, op, op->to);
    struct mig_steps views = {0};
    if (carry_views(c, op, op->table, op->from, &c->p->contract, &views) != 0) {
        mig_steps_free(&deferred);
        return -1;
    }
    add_alter(&c->p->contract, op, op->table, "DROP COLUMN", op->from, "");
    append_steps(&c->p->contract, &deferred);
    if (views.n > 0) {
        /* The views are created while the new column wears the old name, so
         * the rename after makes Postgres write `new AS old` in them, as an
         * offline RENAME COLUMN does. */
        rename_column_twice(c, op, op->to, op->from, &views);
    }
    add_alter(&c->p->rollback, op, op->table, "DROP COLUMN IF EXISTS", op->to, "");
    return 0;
}

/* ---- checks that complete validates before its cutover ------------------ */

static void rename_column_statement(struct mig_str *s, const struct mig_op *op, const char *from,
                                    const char *to)
{
    mig_str_add(s, "ALTER TABLE ");
    mig_str_qname(s, op->schema, op->table);
    mig_str_add(s, " RENAME COLUMN ");
    mig_str_ident(s, from);
    mig_str_add(s, " TO ");
    mig_str_ident(s, to);
    mig_str_add(s, ";\n");
}

/* The check is written for the new shape, where the column's name means the
 * shadow column. Postgres binds a constraint to column numbers, not names, so
 * it is added while the shadow column wears the column's name and keeps
 * pointing at the shadow once the names are swapped back. One transaction:
 * no other session ever sees the swap. */
static char *check_add_sql(const struct plan_ctx *c, const struct mig_op *op, const char *shadow,
                           const char *cname)
{
    char parked[80];
    object_name(parked, sizeof parked, "old", op, -1, c->m->name);
    struct mig_str s = {0};
    mig_str_add(&s, "ALTER TABLE ");
    mig_str_qname(&s, op->schema, op->table);
    mig_str_add(&s, " DROP CONSTRAINT IF EXISTS ");
    mig_str_ident(&s, cname);
    mig_str_add(&s, ";\n");
    rename_column_statement(&s, op, op->column, parked);
    rename_column_statement(&s, op, shadow, op->column);
    mig_str_add(&s, "ALTER TABLE ");
    mig_str_qname(&s, op->schema, op->table);
    mig_str_add(&s, " ADD CONSTRAINT ");
    mig_str_ident(&s, cname);
    mig_str_addf(&s, " CHECK (%s) NOT VALID;\n", op->check);
    rename_column_statement(&s, op, op->column, shadow);
    rename_column_statement(&s, op, parked, op->column);
    return mig_str_take(&s);
}

/* The table's key columns, quoted, each followed by suffix (offline plans get
 * a placeholder). */
static void key_columns(struct mig_str *s, const struct mig_cat_table *t, const char *suffix)
{
    if (!t || t->npk == 0) {
        mig_str_addf(s, "<primary key>%s", suffix);
        return;
    }
    for (size_t k = 0; k < t->npk; k++) {
        if (k)
            mig_str_add(s, ", ");
        mig_str_ident(s, t->pk[k]);
        mig_str_add(s, suffix);
    }
}

/* Counts the rows whose new shape violates the check and names the first
 * one's key. It reads the version view, where the check's column names mean
 * what its author meant. */
static char *check_violations_sql(const struct plan_ctx *c, const struct mig_op *op)
{
    const struct mig_cat_table *t = table_of(c, op->schema, op->table);
    char vschema[80];
    snprintf(vschema, sizeof vschema, "pgtandem_%s", c->m->name);
    struct mig_str label = {0};
    mig_str_add(&label, "(");
    key_columns(&label, t, "");
    mig_str_add(&label, ")=(");
    char *prefix = mig_str_take(&label);
    struct mig_str s = {0};
    mig_str_add(&s, "SELECT count(*) OVER (), ");
    mig_str_literal(&s, prefix ? prefix : "");
    mig_str_add(&s, " || concat_ws(', ', ");
    key_columns(&s, t, "::text");
    mig_str_add(&s, ") || ')' FROM ");
    mig_str_qname(&s, vschema, op->table);
    mig_str_add(&s, " AS ");
    mig_str_ident(&s, op->table);
    mig_str_addf(&s, " WHERE NOT (%s) ORDER BY ", op->check);
    key_columns(&s, t, "");
    mig_str_add(&s, " LIMIT 1");
    free(prefix);
    return mig_str_take(&s);
}

static char *alter_table_sql(const struct mig_op *op, const char *action, const char *ident)
{
    struct mig_str s = {0};
    mig_str_add(&s, "ALTER TABLE ");
    mig_str_qname(&s, op->schema, op->table);
    mig_str_addf(&s, " %s ", action);
    mig_str_ident(&s, ident);
    return mig_str_take(&s);
}

/* alter_column's check needs a scan of the table to be validated. The scan
 * must not run inside the contract (it would hold the table's lock, and the
 * paused traffic, while it reads) nor after it (a violation could then only
 * be logged): complete validates first, with traffic flowing, and refuses to
 * go on when rows violate the check. */
static void add_check_before_cutover(struct plan_ctx *c, const struct mig_op *op, const char *shadow)
{
    char cname[80];
    object_name(cname, sizeof cname, "ck", op, -1, c->m->name);
    struct mig_check *grown = realloc(c->p->checks, (c->p->nchecks + 1) * sizeof *grown);
    if (!grown) {
        c->p->contract.oom = 1;
        return;
    }
    c->p->checks = grown;
    struct mig_check *k = &c->p->checks[c->p->nchecks++];
    memset(k, 0, sizeof *k);
    k->op_index = op->index;
    struct mig_str d = {0};
    mig_str_addf(&d, "operations[%d].%s: check (%s) on ", op->index, mig_op_name(op->kind), op->check);
    mig_str_qname(&d, op->schema, op->table);
    k->describe = mig_str_take(&d);
    k->add = check_add_sql(c, op, shadow, cname);
    k->validate = alter_table_sql(op, "VALIDATE CONSTRAINT", cname);
    k->violations = check_violations_sql(c, op);
    k->drop = alter_table_sql(op, "DROP CONSTRAINT IF EXISTS", cname);
    if (!k->describe || !k->add || !k->validate || !k->violations || !k->drop)
        c->p->contract.oom = 1;
    /* Already validated by then, so this costs nothing; should anything ever
     * skip the validation, the contract fails instead of losing the check. */
    add_alter(&c->p->contract, op, op->table, "VALIDATE CONSTRAINT", cname, "");
    add_alter(&c->p->rollback, op, op->table, "DROP CONSTRAINT IF EXISTS", cname, "");
}

static int plan_alter_column(struct plan_ctx *c, const struct mig_op *op)
{
    if (require_table(c, op, op->table) || require_column(c, op, op->table, op->column) ||
        require_key(c, op, op->table))
        return -1;
    if (key_uses(c, op, op->table, op->column))
        return op_error(c, op, "\"%s\" is part of the key of \"%s\"; altering key columns online is "
                        "not supported", op->column, op->table);
    char shadow[80];
    shadow_name(shadow, sizeof shadow, op->column);
    if (require_no_column(c, op, op->table, shadow))
        return -1;
    if (refuse_uncarried_dependents(c, op, op->table, op->column, 0))
        return -1;
    struct shadow_spec sp = {op->table, op->column, shadow, op->type, op->up, op->down,
                             !op->has_default, op->nullable != 1, 1, 1};
    struct mig_steps deferred = {0};
    if (expand_second_column(c, op, &sp, &deferred) != 0)
        return -1;
    set_new_default(c, op, shadow);
    struct mig_cat_column *oc = mig_catalog_column(table_of(c, op->schema, op->table), op->column);
    if (op->nullable == 0 && !(oc && oc->notnull))
        add_not_null_check(c, op, op->table, shadow);
    if (op->unique == 1) {
        char ix[80];
        object_name(ix, sizeof ix, "uq", op, -1, c->m->name);
        char *cols[1] = {shadow};
        add_index_build(&c->p->expand, op, op->schema, ix,
                        index_sql(op->schema, op->table, ix, 1, NULL, cols, 1, NULL, NULL, NULL));
    }
    struct mig_steps views = {0};
    if (carry_views(c, op, op->table, op->column, &c->p->contract, &views) != 0) {
        mig_steps_free(&deferred);
        return -1;
    }
    add_alter(&c->p->contract, op, op->table, "DROP COLUMN", op->column, "");
    /* The deferred steps (SET NOT NULL, index and constraint names) address
     * the shadow column by the name it has until the rename below. */
    append_steps(&c->p->contract, &deferred);
    struct mig_str r = {0};
    mig_str_add(&r, " TO ");
    mig_str_ident(&r, op->column);
    char *tail = mig_str_take(&r);
    add_alter(&c->p->contract, op, op->table, "RENAME COLUMN", shadow, tail ? tail : "");
    free(tail);
    append_steps(&c->p->contract, &views);
    if (op->check)
        add_check_before_cutover(c, op, shadow);
    add_alter(&c->p->rollback, op, op->table, "DROP COLUMN IF EXISTS", shadow, "");
    return 0;
}

static void column_definition(struct mig_str *s, const struct mig_column *col, int with_default)
{
    mig_str_ident(s, col->name);
    mig_str_addf(s, " %s", col->type);
    /* DEFAULT takes a b_expr: parentheses let any one expression through */
    if (with_default && col->default_expr)
        mig_str_addf(s, " DEFAULT (%s)", col->default_expr);
}

/* "table" or "table(column)" from a column's "references". */
static void references_clause(struct mig_str *s, const char *schema, const char *ref)
{
    char table[128] = "", column[128] = "";
    const char *open = strchr(ref, '(');
    size_t tlen = open ? (size_t)(open - ref) : strlen(ref);
    snprintf(table, sizeof table, "%.*s", (int)(tlen < 127 ? tlen : 127), ref);
    if (open) {
        const char *close = strchr(open, ')');
        size_t clen = close ? (size_t)(close - open - 1) : strlen(open + 1);
        snprintf(column, sizeof column, "%.*s", (int)(clen < 127 ? clen : 127), open + 1);
    }
    mig_str_add(s, " REFERENCES ");
    mig_str_qname(s, schema, table);
    if (column[0]) {
        mig_str_add(s, " (");
        mig_str_ident(s, column);
        mig_str_add(s, ")");
    }
}

/* Would Postgres rewrite the table to add this column with its default
 * (see probe_default in engine.c)? Without a catalog, the default's
 * function calls are read by name. */
static int default_rewrites(const struct plan_ctx *c, const struct mig_op *op)
{
    const char *d = op->col.default_expr;
    if (!d || op->up)
        return 0;
    if (c->cat && c->cat->default_rewrites && (size_t)op->index < c->cat->ndefault_rewrites)
        return c->cat->default_rewrites[op->index];
    return sql_fragment_volatile(d) == 1;
}

/* The trigger of add_column: every old-shape write gets the column
 * computed by `fill` (its "up"; or, for a default Postgres would have to
 * write into every row, that default, on rows that do not have a value
 * yet); new-shape writes set it themselves. */
static void add_column_trigger(struct plan_ctx *c, const struct mig_op *op, const char *fill, int only_null)
{
    const struct mig_column *col = &op->col;
    char fname[80];
    trigger_names(c, op, fname, sizeof fname);
    struct mig_str f = {0};
    mig_str_add(&f, "DECLARE\n");
    declare_columns(c, &f, op, op->table, col->name, col->type);
    declare_shape(&f);
    mig_str_add(&f, "BEGIN\n");
    /* A bypassing writer is an old-shape writer unless it declared the
     * version: the column's default would make "it gave the column" a
     * guess. */
    writer_shape(c, &f, "false", "false");
    mig_str_add(&f, "  IF NOT pgt_new_shape THEN\n");
    if (only_null) {
        mig_str_add(&f, "    pgt_run := NEW.");
        mig_str_ident(&f, col->name);
        mig_str_add(&f, " IS NULL;\n");
    } else {
        direction_runs(c, &f, op, op->table, "    ", fill, col->name, NULL, NULL);
    }
    mig_str_add(&f, "    IF pgt_run THEN\n      NEW.");
    mig_str_ident(&f, col->name);
    mig_str_addf(&f, " := (%s);\n    END IF;\n  END IF;\n  RETURN NEW;\nEND\n", fill);
    install_trigger(c, op, op->table, trigger_function(fname, mig_str_take(&f)));
}

static int plan_add_column(struct plan_ctx *c, const struct mig_op *op)
{
    const struct mig_column *col = &op->col;
    if (require_table(c, op, op->table) || require_no_column(c, op, op->table, col->name))
        return -1;
    /* A default Postgres would write into every row (a volatile one) is
     * not added with the column: that rewrites the table under ACCESS
     * EXCLUSIVE. The column is added bare, the default set for new rows,
     * and the existing rows filled by the backfill, as by an "up". */
    int rewrites = default_rewrites(c, op);
    const char *fill = op->up ? op->up : rewrites ? col->default_expr : NULL;
    if (fill && require_key(c, op, op->table))
        return -1;
    if (col->nullable == 0 && !col->default_expr && !op->up)
        return op_error(c, op, "column \"%s\" is NOT NULL but has neither \"default\" nor \"up\"; "
                        "existing rows would violate it", col->name);
    struct mig_str s = {0};
    mig_str_add(&s, "ALTER TABLE ");
    mig_str_qname(&s, op->schema, op->table);
    mig_str_add(&s, " ADD COLUMN ");
    column_definition(&s, col, !fill);
    mig_steps_add(&c->p->expand, op->index, MIG_STEP_TXN, mig_str_take(&s));
    remember_column(c, op->schema, op->table, col->name, col->type);
    if (fill && col->default_expr) {
        struct mig_str ds = {0};
        mig_str_addf(&ds, " SET DEFAULT %s", col->default_expr);
        char *tail = mig_str_take(&ds);
        add_alter(&c->p->expand, op, op->table, "ALTER COLUMN", col->name, tail ? tail : "");
        free(tail);
    }
    if (rewrites)
        carried(c, op, "default %s: Postgres would write it into every row under ACCESS EXCLUSIVE; added "
                "without it, set for new rows, existing rows filled by the backfill%s", col->default_expr, "");
    if (col->nullable == 0)
        add_not_null_check(c, op, op->table, col->name);
    if (col->check) {
        char cname[80];
        object_name(cname, sizeof cname, "ck", op, -1, c->m->name);
        struct mig_str t = {0};
        mig_str_addf(&t, " CHECK (%s) NOT VALID", col->check);
        char *tail = mig_str_take(&t);
        add_alter(&c->p->expand, op, op->table, "ADD CONSTRAINT", cname, tail ? tail : "");
        free(tail);
        add_alter(&c->p->validate, op, op->table, "VALIDATE CONSTRAINT", cname, "");
    }
    if (col->references) {
        char cname[80];
        object_name(cname, sizeof cname, "fk", op, -1, c->m->name);
        struct mig_str t = {0};
        mig_str_add(&t, " FOREIGN KEY (");
        mig_str_ident(&t, col->name);
        mig_str_add(&t, ")");
        references_clause(&t, op->schema, col->references);
        mig_str_add(&t, " NOT VALID");
        char *tail = mig_str_take(&t);
        add_alter(&c->p->expand, op, op->table, "ADD CONSTRAINT", cname, tail ? tail : "");
        free(tail);
        add_alter(&c->p->validate, op, op->table, "VALIDATE CONSTRAINT", cname, "");
    }
    if (col->unique == 1) {
        char ix[80];
        object_name(ix, sizeof ix, "uq", op, -1, c->m->name);
        char *cols[1] = {col->name};
        add_index_build(&c->p->expand, op, op->schema, ix,
                        index_sql(op->schema, op->table, ix, 1, NULL, cols, 1, NULL, NULL, NULL));
    }
    if (col->comment)
        add_comment(c, op, op->table, col->name, col->comment);
    if (fill) {
        add_column_trigger(c, op, fill, !op->up);
        add_backfill(c, op, op->table, col->name, col->type, op->up ? NULL : col->name, fill, 0);
    }
    add_alter(&c->p->rollback, op, op->table, "DROP COLUMN IF EXISTS", col->name, "");
    return 0;
}

static int plan_drop_column(struct plan_ctx *c, const struct mig_op *op)
{
    if (require_table(c, op, op->table) || require_column(c, op, op->table, op->column))
        return -1;
    if (key_uses(c, op, op->table, op->column))
        return op_error(c, op, "\"%s\" is part of the key of \"%s\"", op->column, op->table);
    if (refuse_uncarried_dependents(c, op, op->table, op->column, 1))
        return -1;
    if (op->down) {
        char fname[80];
        trigger_names(c, op, fname, sizeof fname);
        struct mig_str f = {0};
        mig_str_add(&f, "DECLARE\n");
        declare_columns(c, &f, op, op->table, NULL, NULL);
        declare_shape(&f);
        mig_str_add(&f, "BEGIN\n");
        /* New-shape writers no longer see the column: their inserts, and
         * their updates of what `down` reads, give it down(row), so the old
         * release reads what they wrote. A bypassing writer that leaves it
         * NULL counts as one. */
        char *isnull = new_is(op->column, " IS NULL");
        writer_shape(c, &f, isnull ? isnull : "false", isnull ? isnull : "false");
        free(isnull);
        mig_str_add(&f, "  IF pgt_new_shape THEN\n");
        direction_runs(c, &f, op, op->table, "    ", op->down, op->column, NULL, NULL);
        mig_str_add(&f, "    IF pgt_run THEN\n      NEW.");
        mig_str_ident(&f, op->column);
        mig_str_addf(&f, " := (%s);\n    END IF;\n  END IF;\n  RETURN NEW;\nEND\n", op->down);
        install_trigger(c, op, op->table, trigger_function(fname, mig_str_take(&f)));
    }
    add_alter(&c->p->contract, op, op->table, "DROP COLUMN", op->column, "");
    return 0;
}

static int plan_create_table(struct plan_ctx *c, const struct mig_op *op)
{
    if (c->cat && table_exists(c, op->schema, op->table))
        return op_error(c, op, "table \"%s.%s\" already exists", op->schema, op->table);
    struct mig_str s = {0};
    mig_str_add(&s, "CREATE TABLE ");
    mig_str_qname(&s, op->schema, op->table);
    mig_str_add(&s, " (\n");
    for (size_t i = 0; i < op->ncols; i++) {
        const struct mig_column *col = &op->cols[i];
        mig_str_add(&s, "  ");
        column_definition(&s, col, 1);
        if (col->primary_key == 1)
            mig_str_add(&s, " PRIMARY KEY");
        if (col->nullable == 0 && col->primary_key != 1)
            mig_str_add(&s, " NOT NULL");
        if (col->unique == 1)
            mig_str_add(&s, " UNIQUE");
        if (col->check)
            mig_str_addf(&s, " CHECK (%s)", col->check);
        if (col->references)
            references_clause(&s, op->schema, col->references);
        mig_str_add(&s, i + 1 < op->ncols ? ",\n" : "\n");
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
    if (c->ncreated < sizeof c->created / sizeof c->created[0])
        c->created[c->ncreated++] = op;
    return 0;
}

static int plan_drop_table(struct plan_ctx *c, const struct mig_op *op)
{
    if (require_table(c, op, op->table))
        return -1;
    struct mig_str s = {0};
    mig_str_add(&s, "DROP TABLE ");
    mig_str_qname(&s, op->schema, op->table);
    mig_steps_add(&c->p->contract, op->index, MIG_STEP_TXN, mig_str_take(&s));
    return 0;
}

/* The table is renamed at expand and a view under the old name keeps old
 * clients working (simple views are updatable); contract drops the view. */
static int plan_rename_table(struct plan_ctx *c, const struct mig_op *op)
{
    if (require_table(c, op, op->from))
        return -1;
    if (c->cat && table_exists(c, op->schema, op->to))
        return op_error(c, op, "table \"%s.%s\" already exists", op->schema, op->to);
    struct mig_str r = {0};
    mig_str_add(&r, " RENAME TO ");
    mig_str_ident(&r, op->to);
    char *tail = mig_str_take(&r);
    char *sql = sqlf_table(op, op->from, tail ? tail : "");
    mig_steps_add(&c->p->expand, op->index, MIG_STEP_TXN, sql);
    free(tail);
    struct mig_str v = {0};
    mig_str_add(&v, "CREATE VIEW ");
    mig_str_qname(&v, op->schema, op->from);
    mig_str_add(&v, " WITH (security_invoker = true) AS SELECT * FROM ");
    mig_str_qname(&v, op->schema, op->to);
    mig_steps_add(&c->p->expand, op->index, MIG_STEP_TXN, mig_str_take(&v));
    struct mig_str d = {0};
    mig_str_add(&d, "DROP VIEW IF EXISTS ");
    mig_str_qname(&d, op->schema, op->from);
    char *drop_view = mig_str_take(&d);
    mig_steps_add(&c->p->contract, op->index, MIG_STEP_TXN, drop_view ? strdup(drop_view) : NULL);
    mig_steps_add(&c->p->rollback, op->index, MIG_STEP_TXN, drop_view);
    struct mig_str b = {0};
    mig_str_add(&b, "ALTER TABLE IF EXISTS ");
    mig_str_qname(&b, op->schema, op->to);
    mig_str_add(&b, " RENAME TO ");
    mig_str_ident(&b, op->from);
    mig_steps_add(&c->p->rollback, op->index, MIG_STEP_TXN, mig_str_take(&b));
    if (c->ncreated < sizeof c->created / sizeof c->created[0])
        c->created[c->ncreated++] = op;
    return 0;
}

/* While the migration runs, a column that an earlier alter_column changes
 * lives on in its shadow column, which takes the column's name at contract
 * (the original is dropped). An index this migration creates on the column
 * is built on the shadow so that it survives the contract, as it would
 * after an offline ALTER COLUMN ... TYPE followed by CREATE INDEX. */
static char *column_after_contract(const struct plan_ctx *c, const struct mig_op *op, const char *col)
{
    for (size_t i = 0; i < (size_t)op->index && i < c->m->nops; i++) {
        const struct mig_op *o = &c->m->ops[i];
        if (o->kind == MIG_ALTER_COLUMN && !strcmp(o->schema, op->schema) && !strcmp(o->table, op->table) &&
            !strcmp(o->column, col)) {
            char shadow[80];
            shadow_name(shadow, sizeof shadow, col);
            return strdup(shadow);
        }
    }
    return strdup(col);
}

static void column_list(struct mig_str *s, char *const *cols, size_t n);

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
        int retypes = o->kind == MIG_ALTER_COLUMN || (o->kind == MIG_RENAME_COLUMN && o->type);
        if (retypes && !strcmp(o->schema, op->schema) && !strcmp(o->table, op->table))
            return 1;
    }
    return 0;
}

static int plan_create_index(struct plan_ctx *c, const struct mig_op *op)
{
    if (require_table(c, op, op->table))
        return -1;
    for (size_t i = 0; i < op->ncolumns; i++)
        if (require_column(c, op, op->table, op->columns[i]))
            return -1;
    for (size_t i = 0; i < op->ninclude; i++)
        if (require_column(c, op, op->table, op->include[i]))
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

/* The index goes once the contract has committed, CONCURRENTLY: a plain
 * DROP INDEX takes ACCESS EXCLUSIVE on its table, and inside the contract
 * it would wait there, holding the cutover, for every query using it. */
static int plan_drop_index(struct plan_ctx *c, const struct mig_op *op)
{
    mig_steps_add(&c->p->post, op->index, MIG_STEP_ALONE, drop_index_sql(op->schema, op->name, 1));
    return 0;
}

static void column_list(struct mig_str *s, char *const *cols, size_t n)
{
    mig_str_add(s, "(");
    for (size_t i = 0; i < n; i++) {
        if (i)
            mig_str_add(s, ", ");
        mig_str_ident(s, cols[i]);
    }
    mig_str_add(s, ")");
}

static int plan_create_constraint(struct plan_ctx *c, const struct mig_op *op)
{
    if (require_table(c, op, op->table))
        return -1;
    for (size_t i = 0; i < op->ncolumns; i++)
        if (require_column(c, op, op->table, op->columns[i]))
            return -1;
    if (op->ref_table && require_table(c, op, op->ref_table))
        return -1;
    if (strcmp(op->constraint_type, "unique") == 0) {
        add_index_build(&c->p->expand, op, op->schema, op->name,
                      index_sql(op->schema, op->table, op->name, 1, NULL, op->columns, op->ncolumns,
                                NULL, NULL, NULL));
        struct mig_str s = {0};
        mig_str_add(&s, " UNIQUE USING INDEX ");
        mig_str_ident(&s, op->name);
        char *tail = mig_str_take(&s);
        add_alter(&c->p->contract, op, op->table, "ADD CONSTRAINT", op->name, tail ? tail : "");
        free(tail);
        mig_steps_add(&c->p->rollback, op->index, MIG_STEP_ALONE, drop_index_sql(op->schema, op->name, 1));
        return 0;
    }
    struct mig_str s = {0};
    if (strcmp(op->constraint_type, "check") == 0) {
        mig_str_addf(&s, " CHECK (%s) NOT VALID", op->check);
    } else {
        mig_str_add(&s, " FOREIGN KEY ");
        column_list(&s, op->columns, op->ncolumns);
        mig_str_add(&s, " REFERENCES ");
        mig_str_qname(&s, op->schema, op->ref_table);
        mig_str_add(&s, " ");
        column_list(&s, op->ref_columns, op->nref_columns);
        if (op->on_delete)
            mig_str_addf(&s, " ON DELETE %s", op->on_delete);
        if (op->on_update)
            mig_str_addf(&s, " ON UPDATE %s", op->on_update);
        mig_str_add(&s, " NOT VALID");
    }
    char *tail = mig_str_take(&s);
    add_alter(&c->p->expand, op, op->table, "ADD CONSTRAINT", op->name, tail ? tail : "");
    free(tail);
    add_alter(&c->p->validate, op, op->table, "VALIDATE CONSTRAINT", op->name, "");
    add_alter(&c->p->rollback, op, op->table, "DROP CONSTRAINT IF EXISTS", op->name, "");
    return 0;
}

static int plan_sql(struct plan_ctx *c, const struct mig_op *op)
{
    struct mig_steps *l = op->on == MIG_ON_START ? &c->p->expand : &c->p->contract;
    mig_steps_add(l, op->index, MIG_STEP_TXN, strdup(op->up));
    if (op->down && op->on == MIG_ON_START)
        mig_steps_add(&c->p->rollback, op->index, MIG_STEP_TXN, strdup(op->down));
    return 0;
}

static int plan_op(struct plan_ctx *c, const struct mig_op *op)
{
    switch (op->kind) {
    case MIG_RENAME_COLUMN: return plan_rename_column(c, op);
    case MIG_ADD_COLUMN: return plan_add_column(c, op);
    case MIG_ALTER_COLUMN: return plan_alter_column(c, op);
    case MIG_DROP_COLUMN: return plan_drop_column(c, op);
    case MIG_CREATE_TABLE: return plan_create_table(c, op);
    case MIG_DROP_TABLE: return plan_drop_table(c, op);
    case MIG_RENAME_TABLE: return plan_rename_table(c, op);
    case MIG_CREATE_INDEX: return plan_create_index(c, op);
    case MIG_DROP_INDEX: return plan_drop_index(c, op);
    case MIG_CREATE_CONSTRAINT: return plan_create_constraint(c, op);
    case MIG_SQL: return plan_sql(c, op);
    }
    return -1;
}

/* ---- version schema ------------------------------------------------------- */

static int op_touches_columns(const struct mig_op *op, const char *schema, const char *table)
{
    int kind_ok = op->kind == MIG_RENAME_COLUMN || op->kind == MIG_ALTER_COLUMN ||
                  op->kind == MIG_DROP_COLUMN || op->kind == MIG_ADD_COLUMN;
    return kind_ok && !strcmp(op->schema, schema) && !strcmp(op->table, table);
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
        if ((op->kind == MIG_DROP_COLUMN || op->kind == MIG_ALTER_COLUMN) && !strcmp(op->column, col))
            return NULL;
        char shadow[80];
        if (op->kind == MIG_ALTER_COLUMN) {
            shadow_name(shadow, sizeof shadow, op->column);
            if (!strcmp(shadow, col))
                return aliased(shadow, op->column);
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
    for (size_t i = 0; t && i < t->ncols; i++)
        add_item(&s, &first, view_item(c, op->schema, op->table, t->cols[i].name));
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
    snprintf(name, sizeof name, MIG_VERSION_SCHEMA_FMT, c->m->name);
    c->p->version_schema = mig_quote_ident(name);
    open_shape_schema(&c->p->expand, c->p->version_schema);
    size_t first_view = c->p->expand.n;
    for (size_t i = 0; i < c->m->nops; i++)
        if (first_to_change_columns(c, i))
            version_view(c, &c->m->ops[i]);
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
    if (c->cat && !t)
        return; /* created by this migration: the old release does not know it */
    struct mig_str s = {0};
    mig_str_addf(&s, "CREATE VIEW %s.", qschema);
    mig_str_ident(&s, table);
    mig_str_add(&s, " WITH (security_invoker = true) AS SELECT ");
    for (size_t i = 0; t && i < t->ncols; i++) {
        mig_str_add(&s, i ? ", " : "");
        mig_str_ident(&s, t->cols[i].name);
    }
    mig_str_add(&s, t && t->ncols ? " FROM " : "* FROM "); /* offline: * is expanded when the view is made */
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

static void move_last_to_front(struct mig_steps *l);

static void old_shape_schema(struct plan_ctx *c)
{
    char name[80];
    snprintf(name, sizeof name, MIG_OLD_SCHEMA_FMT, c->m->name);
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
    int rc = 0;
    for (size_t i = 0; i < m->nops && rc == 0; i++)
        rc = plan_op(c, &m->ops[i]);
    if (rc == 0) {
        reverse_op_groups(&p->rollback);
        version_schema(c);
        /* The views read the old columns, so the version schema goes first. */
        move_last_to_front(&p->contract);
        move_last_to_front(&p->rollback);
        old_shape_schema(c);
    }
    int oom = p->expand.oom || p->contract.oom || p->rollback.oom || p->validate.oom || p->post.oom;
    if (rc == 0 && oom) {
        snprintf(err, errlen, "out of memory building the plan");
        rc = -1;
    }
    free(c);
    if (rc != 0)
        mig_plan_free(p);
    return rc;
}

static void free_bf(struct mig_bf_table *b)
{
    free(b->schema); free(b->name); free(b->qname); free(b->set_list); free(b->pending);
    free(b->mismatch);
    for (size_t i = 0; i < b->nexprs; i++) {
        free(b->exprs[i].what); free(b->exprs[i].column); free(b->exprs[i].up); free(b->exprs[i].pending);
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

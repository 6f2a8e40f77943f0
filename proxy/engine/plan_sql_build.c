/* Small SQL builders the operations share. Identifiers are always quoted
 * through migration_sql; `default`, `check` and `where` are SQL expressions
 * written by the migration's author and are embedded as code. */
#include "migration_lifecycle.h"
#include "migration_plan.h"
#include "plan_ctx.h"

#include <stdlib.h>
#include <string.h>

char *alter_table_sql(const char *schema, const char *table, const char *action, const char *ident,
                      const char *tail)
{
    struct mig_str s = {0};
    mig_str_add(&s, "ALTER TABLE ");
    mig_str_qname(&s, schema, table);
    mig_str_addf(&s, " %s ", action);
    mig_str_ident(&s, ident);
    mig_str_add(&s, tail);
    return mig_str_take(&s);
}

void add_alter(struct mig_steps *l, const struct mig_op *op, const char *table,
                      const char *action, const char *ident, const char *tail)
{
    mig_steps_add(l, op->index, MIG_STEP_TXN, alter_table_sql(op->schema, table, action, ident, tail));
}

char *rename_index_sql(const char *schema, const char *from, const char *to)
{
    struct mig_str s = {0};
    mig_str_add(&s, "ALTER INDEX IF EXISTS ");
    mig_str_qname(&s, schema, from);
    mig_str_add(&s, " RENAME TO ");
    mig_str_ident(&s, to);
    return mig_str_take(&s);
}

char *rename_column_sql(const char *schema, const char *table, const char *from, const char *to)
{
    struct mig_str s = {0};
    mig_str_add(&s, "ALTER TABLE ");
    mig_str_qname(&s, schema, table);
    mig_str_add(&s, " RENAME COLUMN ");
    mig_str_ident(&s, from);
    mig_str_add(&s, " TO ");
    mig_str_ident(&s, to);
    return mig_str_take(&s);
}

void add_rename_column(struct mig_steps *l, const struct mig_op *op, const char *table, const char *from,
                       const char *to)
{
    mig_steps_add(l, op->index, MIG_STEP_TXN, rename_column_sql(op->schema, table, from, to));
}

/* The rename wrapped in a DO block that runs it only when `unless` is
 * false: the statement is the same ALTER TABLE, its lock and its errors
 * (lock_timeout's 55P03 included) the same. */
static char *rename_unless(const char *schema, const char *table, const char *from, const char *to,
                           const char *unless)
{
    char *rename = rename_column_sql(schema, table, from, to);
    struct mig_str s = {0};
    mig_str_addf(&s, "DO $pgtandem$ BEGIN IF NOT (%s) THEN %s; END IF; END $pgtandem$", unless, rename ? rename : "");
    s.oom |= !rename;
    free(rename);
    return mig_str_take(&s);
}

/* "NOT EXISTS (column `col` of the table)", for rename_unless. */
static void add_column_missing(struct mig_str *u, const char *schema, const char *table, const char *col)
{
    struct mig_str q = {0};
    mig_str_qname(&q, schema, table);
    char *qname = mig_str_take(&q);
    mig_str_add(u, "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = ");
    mig_str_literal(u, qname ? qname : "");
    mig_str_add(u, "::regclass AND attname = ");
    mig_str_literal(u, col);
    mig_str_add(u, " AND NOT attisdropped)");
    u->oom |= !qname;
    free(qname);
}

void add_rename_column_unless_done(struct mig_steps *l, const struct mig_op *op, const char *table,
                                   const char *from, const char *to)
{
    struct mig_str u = {0};
    add_column_missing(&u, op->schema, table, from);
    char *unless = mig_str_take(&u);
    mig_steps_add(l, op->index, MIG_STEP_TXN, unless ? rename_unless(op->schema, table, from, to, unless) : NULL);
    free(unless);
}

char *rename_back_unless_completed(const char *schema, const char *table, const char *from, const char *to,
                                   const char *below)
{
    /* not renamed at all when the expand stopped before its first commit */
    struct mig_str u = {0};
    mig_str_add(&u, "EXISTS (SELECT 1 FROM pgtandem.migrations WHERE name = ");
    mig_str_literal(&u, below);
    mig_str_add(&u, " AND status = ");
    mig_str_literal(&u, mig_status_word(MIG_ST_COMPLETED));
    mig_str_add(&u, ") OR ");
    add_column_missing(&u, schema, table, to);
    char *unless = mig_str_take(&u);
    char *sql = unless ? rename_unless(schema, table, to, from, unless) : NULL;
    free(unless);
    return sql;
}

/* ALTER TABLE ... ALTER COLUMN col SET DEFAULT expr, or DROP DEFAULT when
 * expr is NULL. */
void add_set_default(struct mig_steps *l, const struct mig_op *op, const char *table, const char *col,
                     const char *expr)
{
    struct mig_str ds = {0};
    if (expr)
        mig_str_addf(&ds, " SET DEFAULT %s", expr);
    else
        mig_str_add(&ds, " DROP DEFAULT");
    char *tail = mig_str_take(&ds);
    add_alter(l, op, table, "ALTER COLUMN", col, tail ? tail : "");
    free(tail);
}

void add_not_null_check(struct plan_ctx *c, const struct mig_op *op, const char *table,
                               const char *col)
{
    char cname[80];
    add_not_null_check_k(c, op, table, col, -1, cname);
}

void add_not_null_check_k(struct plan_ctx *c, const struct mig_op *op, const char *table, const char *col, int k,
                          char *cname)
{
    object_name(cname, 80, "nn", op, k, c->m->name);
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

void add_comment(struct plan_ctx *c, const struct mig_op *op, const char *table,
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

void index_definition_sql(struct mig_str *s, const char *method, char *const *cols, size_t ncols,
                          const char *swap_from, const char *swap_to, const char *where)
{
    mig_str_add(s, "USING ");
    mig_str_ident(s, method ? method : "btree");
    mig_str_add(s, " (");
    for (size_t i = 0; i < ncols; i++) {
        if (i)
            mig_str_add(s, ", ");
        int swap = swap_from && strcmp(cols[i], swap_from) == 0;
        mig_str_ident(s, swap ? swap_to : cols[i]);
    }
    mig_str_add(s, ")");
    if (where)
        mig_str_addf(s, " WHERE (%s)", where);
}

char *index_sql(const char *schema, const char *table, const char *name, int unique,
                       const char *method, char *const *cols, size_t ncols, const char *swap_from,
                       const char *swap_to, const char *where)
{
    struct mig_str s = {0};
    mig_str_addf(&s, "CREATE %sINDEX CONCURRENTLY ", unique ? "UNIQUE " : "");
    mig_str_ident(&s, name);
    mig_str_add(&s, " ON ");
    mig_str_qname(&s, schema, table);
    mig_str_add(&s, " ");
    index_definition_sql(&s, method, cols, ncols, swap_from, swap_to, where);
    return mig_str_take(&s);
}

char *drop_index_sql(const char *schema, const char *name, int concurrently)
{
    struct mig_str s = {0};
    mig_str_addf(&s, "DROP INDEX %sIF EXISTS ", concurrently ? "CONCURRENTLY " : "");
    mig_str_qname(&s, schema, name);
    return mig_str_take(&s);
}

void add_unique_using_index(struct plan_ctx *c, const struct mig_op *op, const char *table, const char *name,
                            const char *ix)
{
    struct mig_str s = {0};
    mig_str_add(&s, " UNIQUE USING INDEX ");
    mig_str_ident(&s, ix);
    char *tail = mig_str_take(&s);
    add_alter(&c->p->contract, op, table, "ADD CONSTRAINT", name, tail ? tail : "");
    free(tail);
}

/* CREATE INDEX CONCURRENTLY that fails leaves an INVALID index behind; the
 * step carries the DROP that lets the engine retry it once. */
void add_index_build(struct mig_steps *l, const struct mig_op *op, const char *schema,
                            const char *name, char *create_sql)
{
    mig_steps_add(l, op->index, MIG_STEP_ALONE, create_sql);
    mig_steps_set_cleanup(l, drop_index_sql(schema, name, 1));
}

void append_steps(struct mig_steps *dst, struct mig_steps *src)
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

void column_definition(struct mig_str *s, const struct mig_column *col, int with_default)
{
    mig_str_ident(s, col->name);
    mig_str_addf(s, " %s", col->type);
    /* DEFAULT takes a b_expr: parentheses let any one expression through */
    if (with_default && col->default_expr)
        mig_str_addf(s, " DEFAULT (%s)", col->default_expr);
}

/* "table" or "table(column)" from a column's "references". */
void references_clause(struct mig_str *s, const char *schema, const char *ref)
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

void column_list(struct mig_str *s, char *const *cols, size_t n)
{
    mig_str_add(s, "(");
    for (size_t i = 0; i < n; i++) {
        if (i)
            mig_str_add(s, ", ");
        mig_str_ident(s, cols[i]);
    }
    mig_str_add(s, ")");
}

/* A constraint of the new shape that complete validates before its
 * cutover, with traffic flowing (struct mig_check): alter_column's
 * "check", under the name Postgres gives it offline (t_c_check). */
#include "migration_plan.h"
#include "plan_ctx.h"

#include <stdlib.h>
#include <string.h>

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

/* The rows of relation schema.rel (the table, or its new shape's view)
 * that `bad` picks: their count and the first one's key as ("k")=(v). */
static char *first_bad_row_sql(const struct plan_ctx *c, const struct mig_op *op, const char *schema,
                               const char *rel, const char *bad)
{
    const struct mig_cat_table *t = table_of(c, op->schema, op->table);
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
    mig_str_qname(&s, schema, rel);
    mig_str_add(&s, " AS ");
    mig_str_ident(&s, op->table);
    mig_str_addf(&s, " WHERE %s ORDER BY ", bad);
    key_columns(&s, t, "");
    mig_str_add(&s, " LIMIT 1");
    free(prefix);
    return mig_str_take(&s);
}

/* Counts the rows whose new shape violates the check and names the first
 * one's key. It reads the version view, where the check's column names mean
 * what its author meant. */
static char *check_violations_sql(const struct plan_ctx *c, const struct mig_op *op)
{
    char vschema[80];
    mig_version_schema(c->m->name, vschema, sizeof vschema);
    struct mig_str w = {0};
    mig_str_addf(&w, "NOT (%s)", op->check);
    char *bad = mig_str_take(&w);
    char *sql = bad ? first_bad_row_sql(c, op, vschema, op->table, bad) : NULL;
    free(bad);
    return sql;
}

/* One constraint complete validates before its cutover, named cname on
 * op's table: its description, how it is added and how its violations are
 * counted (all three taken, NULL when out of memory); validating and
 * dropping it are the same for all. The rollback drops it too. */
static void add_cutover_check(struct plan_ctx *c, const struct mig_op *op, const char *cname, char *describe,
                              char *add, char *violations)
{
    struct mig_check *grown = realloc(c->p->checks, (c->p->nchecks + 1) * sizeof *grown);
    if (!grown) {
        free(describe);
        free(add);
        free(violations);
        c->p->contract.oom = 1;
        return;
    }
    c->p->checks = grown;
    struct mig_check *k = &c->p->checks[c->p->nchecks++];
    *k = (struct mig_check){.op_index = op->index, .describe = describe, .add = add, .violations = violations};
    k->validate = alter_table_sql(op->schema, op->table, "VALIDATE CONSTRAINT", cname, "");
    k->drop = alter_table_sql(op->schema, op->table, "DROP CONSTRAINT IF EXISTS", cname, "");
    if (!k->describe || !k->add || !k->validate || !k->violations || !k->drop)
        c->p->contract.oom = 1;
    add_alter(&c->p->rollback, op, op->table, "DROP CONSTRAINT IF EXISTS", cname, "");
}

/* alter_column's check needs a scan of the table to be validated. The scan
 * must not run inside the contract (it would hold the table's lock, and the
 * paused traffic, while it reads) nor after it (a violation could then only
 * be logged): complete validates first, with traffic flowing, and refuses to
 * go on when rows violate the check. */
void add_check_before_cutover(struct plan_ctx *c, const struct mig_op *op, const char *shadow)
{
    char cname[80];
    choose_check_name(c, op->schema, op->table, op->check, cname, sizeof cname);
    struct mig_str d = {0};
    mig_str_addf(&d, "operations[%d].%s: check (%s) on ", op->index, mig_op_name(op->kind), op->check);
    mig_str_qname(&d, op->schema, op->table);
    add_cutover_check(c, op, cname, mig_str_take(&d), check_add_sql(c, op, shadow, cname), check_violations_sql(c, op));
    /* Already validated by then, so this costs nothing; should anything ever
     * skip the validation, the contract fails instead of losing the check. */
    add_alter(&c->p->contract, op, op->table, "VALIDATE CONSTRAINT", cname, "");
}

/* The rows of the table whose column is NULL: their count and the first
 * one's key. */
static char *null_rows_sql(const struct plan_ctx *c, const struct mig_op *op, const char *col)
{
    struct mig_str w = {0};
    mig_str_ident(&w, col);
    mig_str_add(&w, " IS NULL");
    char *bad = mig_str_take(&w);
    char *sql = bad ? first_bad_row_sql(c, op, op->schema, op->table, bad) : NULL;
    free(bad);
    return sql;
}

void add_not_null_before_cutover(struct plan_ctx *c, const struct mig_op *op, const char *col)
{
    char cname[80];
    object_name(cname, sizeof cname, "nn", op, -1, c->m->name);
    struct mig_str d = {0}, a = {0};
    mig_str_addf(&d, "operations[%d].%s: NOT NULL of \"%s\" on ", op->index, mig_op_name(op->kind), col);
    mig_str_qname(&d, op->schema, op->table);
    mig_str_add(&a, "ALTER TABLE ");
    mig_str_qname(&a, op->schema, op->table);
    mig_str_add(&a, " DROP CONSTRAINT IF EXISTS ");
    mig_str_ident(&a, cname);
    mig_str_add(&a, ";\nALTER TABLE ");
    mig_str_qname(&a, op->schema, op->table);
    mig_str_add(&a, " ADD CONSTRAINT ");
    mig_str_ident(&a, cname);
    mig_str_add(&a, " CHECK (");
    mig_str_ident(&a, col);
    mig_str_add(&a, " IS NOT NULL) NOT VALID");
    add_cutover_check(c, op, cname, mig_str_take(&d), mig_str_take(&a), null_rows_sql(c, op, col));
    /* validated by then: SET NOT NULL skips its scan for a valid CHECK (col IS NOT NULL) */
    add_alter(&c->p->contract, op, op->table, "ALTER COLUMN", col, " SET NOT NULL");
    add_alter(&c->p->contract, op, op->table, "DROP CONSTRAINT", cname, "");
}

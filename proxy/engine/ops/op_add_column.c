/* add_column: a new column, with its default, NOT NULL, CHECK, foreign key,
 * UNIQUE and comment.
 *
 * Expand adds the column; the old release never sees it (its shape's view
 * lists the columns it knew), the new release reads and writes it. CHECK
 * and foreign key are added NOT VALID and validated after the backfill,
 * NOT NULL is a CHECK NOT VALID, validated, that the contract turns into
 * SET NOT NULL, UNIQUE an index built CONCURRENTLY that the contract makes
 * the UNIQUE constraint. Each constraint gets the name Postgres gives it
 * offline (t_c_check, t_c_fkey, t_c_key: plan_pg_names.c). With an "up", or a
 * default Postgres would write into every row (a volatile one: that
 * rewrites the table under ACCESS EXCLUSIVE), the column is added bare,
 * the default set for new rows, a trigger fills it on old-shape writes and
 * the backfill on the rows written before expand. The rollback drops the
 * column. */
#include "ops/op.h"
#include "migration_plan.h"
#include "plan_ctx.h"
#include "migration_names.h"
#include "sql_fragment.h"

#include <stdlib.h>
#include <string.h>

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
/* An "up" as the column's type. Offline, `UPDATE t SET c = 'pro'` assigns
 * the literal to c, whatever type c has; the backfill puts "up" in
 * `CASE WHEN c IS NULL THEN (up) ELSE c END`, where Postgres types a
 * branch of literals as text and refuses to match it with an enum (CASE
 * types space_tiers and text cannot be matched), after the expand. The
 * cast gives the branch the column's type, as the assignment does. A type
 * with a modifier (varchar(60), numeric(10,2)) is left as it is: its cast
 * would cut what the assignment refuses. NULL: no cast (or out of memory). */
static char *typed_up(const char *up, const char *type)
{
    if (!type || strchr(type, '('))
        return NULL;
    struct mig_str s = {0};
    mig_str_addf(&s, "CAST((%s) AS %s)", up, type);
    return mig_str_take(&s);
}

static void add_column_trigger(struct plan_ctx *c, const struct mig_op *op, const char *fill, int only_null)
{
    const struct mig_column *col = &op->col;
    char fname[80];
    trigger_names(c, op, fname, sizeof fname);
    struct mig_str f = {0};
    mig_str_add(&f, "DECLARE\n");
    const char *exprs[1] = {fill};
    declare_columns(c, &f, op, op->table, col->name, col->type, exprs, 1);
    declare_shape(&f);
    mig_str_add(&f, "BEGIN\n");
    /* A bypassing writer is an old-shape writer unless it declared the
     * version: the column's default would make "it gave the column" a
     * guess. */
    writer_shape(c, &f, op, op->table, 1, "false", "false");
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


/* Whether the SQL expression expr reads the column name (a whole-row
 * reference, or an expression that does not parse, counts). */
static int expr_names(const char *expr, const char *name)
{
    if (!expr)
        return 0;
    char **names = NULL;
    size_t n = 0;
    int star = 0, hit = sql_fragment_columns(expr, &names, &n, &star) != SQL_FRAGMENT_OK || star;
    for (size_t i = 0; i < n && !hit; i++)
        hit = !strcmp(names[i], name);
    sql_fragment_free_names(names, n);
    return hit;
}

/* Whether a later operation o of the table names the column added under
 * a freed name in a way that would act on the renamed column, which has
 * the name until the contract. A key's or an index's columns, INCLUDE,
 * predicate and CHECK are read over the added column's second column
 * (column_until_contract, plan_carry.c) and do not count; an index key
 * written as SQL, and every expression of other operations, do. */
static int names_column(const struct mig_op *o, const char *name)
{
    /* a default set or dropped alone changes the new shape's view at
     * expand and the table at the contract, after the add's rename gave
     * the column its name (61207-270: SET DEFAULT right after the ADD) */
    if (o->kind == MIG_ALTER_COLUMN && o->has_default && !o->type && o->nullable == -1 && o->unique != 1 &&
        !o->up && !o->down && !o->check && !o->recreate)
        return 0;
    if (o->kind == MIG_CREATE_INDEX || o->kind == MIG_CREATE_CONSTRAINT) {
        for (size_t i = 0; i < o->nkeys; i++)
            if (expr_names(o->keys[i], name))
                return 1;
        return 0;
    }
    if ((o->column && !strcmp(o->column, name)) || (o->from && o->kind == MIG_RENAME_COLUMN && !strcmp(o->from, name)))
        return 1;
    for (size_t i = 0; i < o->ncolumns; i++)
        if (!strcmp(o->columns[i], name))
            return 1;
    for (size_t i = 0; i < o->ninclude; i++)
        if (!strcmp(o->include[i], name))
            return 1;
    return expr_names(o->up, name) || expr_names(o->down, name) || expr_names(o->check, name) ||
           expr_names(o->where, name) || expr_names(o->default_expr, name) ||
           (o->kind == MIG_ADD_COLUMN && (expr_names(o->col.check, name) || expr_names(o->col.default_expr, name)));
}

/* A column added under the name an earlier rename frees: until the
 * contract the old release reads the renamed column under that name, so
 * the new one is added under its second column's name (the new shape's
 * view shows it under its own), and the contract, after the rename, gives
 * it its name; the rollback drops it. Each release sees its shape: the old
 * one the old column as it knew it, the new one both. Only a plain column
 * (a type, a constant default, NOT NULL with it): a constraint, an "up" or a later
 * operation on it would act on the name while the old column still has
 * it, and is refused before any DDL. */
static int plan_add_in_freed_name(struct plan_ctx *c, const struct mig_op *op, const struct mig_op *rename)
{
    const struct mig_column *col = &op->col;
    char shadow[80];
    mig_shadow_name(shadow, sizeof shadow, col->name);
    if (op->up || (col->nullable == 0 && !col->default_expr) || col->check || col->references || col->unique == 1 || col->comment ||
        col->primary_key == 1 || default_rewrites(c, op))
        return op_error(c, op, "column \"%s\" takes the name operations[%d].rename_column frees, which the old "
                        "release reads as the renamed column until the contract; such a column can only be plain "
                        "(a type, a constant default, NOT NULL only with that default). Add it so here, and its "
                        "constraints, comment or \"up\" in a migration after this one", col->name, rename->index);
    for (size_t i = (size_t)op->index + 1; i < c->m->nops; i++) {
        const struct mig_op *o = &c->m->ops[i];
        if (o->table && !strcmp(o->schema, op->schema) && !strcmp(o->table, op->table) && names_column(o, col->name))
            return op_error(c, op, "operations[%zu].%s names \"%s\", the column added here under the name "
                            "operations[%d].rename_column frees; until the contract that name is the old column's. "
                            "Change the new column in a migration after this one", i, mig_op_name(o->kind),
                            col->name, rename->index);
    }
    if (require_no_column(c, op, op->table, shadow))
        return -1;
    struct mig_column physical = *col;
    physical.name = shadow;
    struct mig_str s = {0};
    mig_str_add(&s, "ALTER TABLE ");
    mig_str_qname(&s, op->schema, op->table);
    mig_str_add(&s, " ADD COLUMN ");
    column_definition(&s, &physical, 1);
    mig_steps_add(&c->p->expand, op->index, MIG_STEP_TXN, mig_str_take(&s));
    remember_column(c, op->schema, op->table, shadow, col->type);
    if (col->nullable == 0)
        add_not_null_check(c, op, op->table, shadow);  /* its contract's SET NOT NULL goes before the rename */
    /* the rename's contract steps come first (an earlier operation) */
    add_rename_column(&c->p->contract, op, op->table, shadow, col->name);
    add_alter(&c->p->rollback, op, op->table, "DROP COLUMN IF EXISTS", shadow, "");
    carried(c, op, "added as \"%s\" until the contract, which gives it the name \"%s\" after the rename that frees "
            "it; the old release reads the renamed column under that name until then", shadow, col->name);
    return 0;
}

static int plan_add_column(struct plan_ctx *c, const struct mig_op *op)
{
    const struct mig_column *col = &op->col;
    const struct mig_op *freed = mig_add_column_freed_by(c->m, op);
    if (require_table(c, op, op->table))
        return -1;
    if (freed)
        return plan_add_in_freed_name(c, op, freed);
    if (require_no_column(c, op, op->table, col->name))
        return -1;
    /* A default Postgres would write into every row (a volatile one) is
     * not added with the column: that rewrites the table under ACCESS
     * EXCLUSIVE. The column is added bare, the default set for new rows,
     * and the existing rows filled by the backfill, as by an "up". */
    int rewrites = default_rewrites(c, op);
    const char *fill = op->up ? op->up : rewrites ? col->default_expr : NULL;
    if (fill && require_key(c, op, op->table))
        return -1;
    /* NOT NULL with no value to give: on a table that has rows, refused;
     * on an empty one, checked by complete instead of from expand on */
    const struct mig_cat_table *t = mig_catalog_table(c->cat, op->schema, op->table);
    int required_later = col->nullable == 0 && !col->default_expr && !op->up;
    if (required_later && !(t && t->exists && t->empty))
        return op_error(c, op, "column \"%s\" is NOT NULL but has neither \"default\" nor \"up\"; the rows "
                        "already there%s would violate it. Give it a \"default\", or an \"up\" computing it "
                        "from the row (in SQL: an UPDATE setting it between the ADD COLUMN and the SET NOT NULL)",
                        col->name, c->cat ? " and the inserts of the release that does not know it" : "");
    struct mig_str s = {0};
    mig_str_add(&s, "ALTER TABLE ");
    mig_str_qname(&s, op->schema, op->table);
    mig_str_add(&s, " ADD COLUMN ");
    column_definition(&s, col, !fill);
    mig_steps_add(&c->p->expand, op->index, MIG_STEP_TXN, mig_str_take(&s));
    remember_column(c, op->schema, op->table, col->name, col->type);
    if (fill && col->default_expr)
        add_set_default(&c->p->expand, op, op->table, col->name, col->default_expr);
    if (rewrites)
        carried(c, op, "default %s: Postgres would write it into every row under ACCESS EXCLUSIVE; added "
                "without it, set for new rows, existing rows filled by the backfill%s", col->default_expr, "");
    if (required_later) {
        add_not_null_before_cutover(c, op, col->name);
        carried(c, op, "NOT NULL of \"%s\" without a value: the table is empty, so no row needs one now; rows the "
                "release that does not know the column inserts meanwhile get NULL, and complete refuses until they "
                "have a value (naming the first)%s", col->name, "");
    } else if (col->nullable == 0) {
        add_not_null_check(c, op, op->table, col->name);
    }
    if (col->check) {
        char cname[80];
        choose_check_name(c, op->schema, op->table, col->check, cname, sizeof cname);
        struct mig_str t = {0};
        mig_str_addf(&t, " CHECK (%s) NOT VALID", col->check);
        char *tail = mig_str_take(&t);
        add_alter(&c->p->expand, op, op->table, "ADD CONSTRAINT", cname, tail ? tail : "");
        free(tail);
        add_alter(&c->p->validate, op, op->table, "VALIDATE CONSTRAINT", cname, "");
    }
    if (col->references) {
        char cname[80];
        char *cols[1] = {col->name};
        choose_fkey_name(c, op->schema, op->table, cols, 1, cname, sizeof cname);
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
        char ix[80], key[80];
        object_name(ix, sizeof ix, "uq", op, -1, c->m->name);
        char *cols[1] = {col->name};
        add_index_build(&c->p->expand, op, op->schema, ix,
                        index_sql(op->schema, op->table, ix, 1, NULL, cols, 1, NULL, NULL, NULL));
        choose_key_name(c, op->schema, op->table, cols, 1, 0, key, sizeof key);
        add_unique_using_index(c, op, op->table, key, ix);
    }
    if (col->comment)
        add_comment(c, op, op->table, col->name, col->comment);
    if (fill) {
        char *typed = op->up ? typed_up(op->up, col->type) : NULL;
        add_column_trigger(c, op, typed ? typed : fill, !op->up);
        add_backfill(c, op, op->table, col->name, col->type, op->up ? NULL : col->name, typed ? typed : fill, 0);
        free(typed);
    }
    add_alter(&c->p->rollback, op, op->table, "DROP COLUMN IF EXISTS", col->name, "");
    return 0;
}

const struct mig_op_def op_add_column = {
    .kind = MIG_ADD_COLUMN, .plan = plan_add_column, .changes_columns = 1,
};

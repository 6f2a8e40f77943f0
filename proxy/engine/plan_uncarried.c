/* Validation before any DDL: every object depending on a column that takes
 * a second column (or is dropped) must follow it the way an offline ALTER
 * TABLE takes it along, or the operation is refused, naming the object,
 * why, and what to do instead. */
#include "migration_plan.h"
#include "plan_ctx.h"

#include <string.h>

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
    const struct mig_cat_column *oc = mig_catalog_column(t, d->column);
    /* The column's own sequence (serial) moves with it (plan_carry.c). */
    if (d->kind == MIG_DEP_OTHER && oc && oc->sequence && !strncmp(d->describe, "sequence ", 9))
        return NULL;
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
        ix = d->contype == 'u' || d->contype == 'p' ? index_of_constraint(t, d->name) : NULL;
        if (ix && ix->simple)
            return NULL;
        return "pgtandem does not re-create CHECK, EXCLUDE or such UNIQUE or PRIMARY KEY constraints on the new column; drop "
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

/* The second column is a plain column until the contract: an identity
 * moves to it there (plan_carry.c) from a sequence counting upwards; a
 * generated column would lose its expression (an offline ALTER COLUMN ...
 * TYPE keeps it, rewriting the table under an ACCESS EXCLUSIVE lock). */
static int refuse_identity_or_generated(struct plan_ctx *c, const struct mig_op *op, const char *table,
                                        const char *col)
{
    const struct mig_cat_column *oc = mig_catalog_column(table_of(c, op->schema, table), col);
    if (oc && oc->identity && (!oc->sequence || oc->sequence_descending))
        return op_error(c, op, "column \"%s\" of \"%s.%s\" is an identity column (GENERATED %s AS IDENTITY) "
                        "whose sequence %s, which pgtandem does not move to a second column; keep its type, or "
                        "add a new column with add_column, fill it, and drop this one in a later migration", col,
                        op->schema, table, oc->identity == 'a' ? "ALWAYS" : "BY DEFAULT",
                        oc->sequence ? "counts downwards" : "was not found");
    const char *to = op->type;
    if (oc && oc->identity && to && strcmp(to, "smallint") && strcmp(to, "integer") && strcmp(to, "bigint") &&
        strcmp(to, "int2") && strcmp(to, "int4") && strcmp(to, "int8") && strcmp(to, "int"))
        return op_error(c, op, "column \"%s\" of \"%s.%s\" is an identity column; its new type %s cannot hold "
                        "one (smallint, integer or bigint): keep an integer type, or add a new column with "
                        "add_column, fill it, and drop this one in a later migration", col, op->schema, table, to);
    if (oc && oc->generated)
        return op_error(c, op, "column \"%s\" of \"%s.%s\" is a generated column (GENERATED ALWAYS AS (%s) "
                        "STORED), which a second column cannot carry (the dual-write trigger cannot write it); "
                        "keep its type, or drop it with drop_column and add it again with the new type after "
                        "this migration completes", col, op->schema, table,
                        oc->default_expr ? oc->default_expr : "...");
    return 0;
}

/* `text` (an index key or a CHECK written as SQL) names `col`: any
 * occurrence counts, so a key that only looks like it is refused too. */
static int text_names(const char *text, const char *col)
{
    return text && col[0] && strstr(text, col) != NULL;
}

/* An index or constraint an operation of this migration before `op`
 * creates on `col`: the catalog read at start does not have it, so the
 * second column would not carry it, and the contract's DROP COLUMN would
 * take it away, where offline ALTER COLUMN ... TYPE rebuilds it. The
 * operation that creates it, or NULL. */
static const struct mig_op *created_earlier_on(const struct plan_ctx *c, const struct mig_op *op,
                                               const char *table, const char *col)
{
    for (size_t i = 0; i < (size_t)op->index && i < c->m->nops; i++) {
        const struct mig_op *o = &c->m->ops[i];
        if ((o->kind != MIG_CREATE_INDEX && o->kind != MIG_CREATE_CONSTRAINT) || !o->table ||
            strcmp(o->schema, op->schema) || strcmp(o->table, table))
            continue;
        for (size_t k = 0; k < o->ncolumns; k++)
            if (o->columns[k] && !strcmp(o->columns[k], col))
                return o;
        for (size_t k = 0; k < o->nkeys; k++)
            if (text_names(o->keys[k], col))
                return o;
        for (size_t k = 0; k < o->ninclude; k++)
            if (o->include[k] && !strcmp(o->include[k], col))
                return o;
        if (text_names(o->check, col) || text_names(o->where, col))
            return o;
    }
    return NULL;
}

/* Validation before any DDL: every object depending on `col` must either
 * follow the second column (or the drop) the way an offline ALTER TABLE
 * takes it along, or the operation is refused, naming it. */
int refuse_uncarried_dependents(struct plan_ctx *c, const struct mig_op *op, const char *table,
                                       const char *col, int dropping)
{
    if (!dropping && refuse_identity_or_generated(c, op, table, col))
        return -1;
    const struct mig_op *made = dropping ? NULL : created_earlier_on(c, op, table, col);
    if (made)
        return op_error(c, op, "operations[%d].%s creates %s \"%s\" on column \"%s\" of \"%s.%s\" earlier in "
                        "this migration, and the column's second column does not carry what the migration itself "
                        "created: write that statement after the change of the column's type (it is then built on "
                        "the new column), or in a later migration", made->index, mig_op_name(made->kind),
                        made->kind == MIG_CREATE_INDEX ? "index" : "constraint", made->name ? made->name : "",
                        col, op->schema, table);
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

/* add_enum_value: ALTER TYPE ... ADD VALUE, at expand, before every other
 * operation's statements and on its own, outside a transaction block: a
 * value added in a transaction cannot be used until it commits (unsafe use
 * of new value), and the same migration may use it (an add_column default,
 * an alter_column up). It changes the catalog alone; both releases see the
 * value at once, which the old release never writes, so it serves both.
 *
 * Postgres cannot remove a value from an enum, so a rollback or a revert
 * keeps it (the plan says so); it is written IF NOT EXISTS, so expand can
 * run again, and a value already where the operation puts it (as a
 * rollback leaves it) is taken as added. Refused before any DDL, as
 * offline: a type that does not exist or is no enum, a value already
 * elsewhere in it (unless "if_not_exists"), a neighbour ("before" /
 * "after") that is not one of its values. */
#include "ops/op.h"
#include "migration_plan.h"
#include "plan_ctx.h"

#include <stdlib.h>
#include <string.h>

/* label is one of the type's values once the earlier operations have run. */
static int has_label(const struct plan_ctx *c, const struct mig_op *op, const struct mig_cat_enum *e,
                     const char *label)
{
    for (size_t i = 0; i < e->nlabels; i++)
        if (!strcmp(e->labels[i], label))
            return 1;
    for (int i = 0; i < op->index; i++) {
        const struct mig_op *o = &c->m->ops[i];
        if (o->kind == MIG_ADD_ENUM_VALUE && !strcmp(o->schema, op->schema) && !strcmp(o->name, op->name) &&
            !strcmp(o->value, label))
            return 1;
    }
    return 0;
}

/* The type already has the value exactly where the operation puts it (a
 * rollback kept it): the type is as the operation leaves it, nothing to do. */
static int placed_as_asked(const struct mig_cat_enum *e, const struct mig_op *op)
{
    for (size_t i = 0; i < e->nlabels; i++) {
        if (strcmp(e->labels[i], op->value) != 0)
            continue;
        if (op->before)
            return i + 1 < e->nlabels && !strcmp(e->labels[i + 1], op->before);
        if (op->after)
            return i > 0 && !strcmp(e->labels[i - 1], op->after);
        return i + 1 == e->nlabels;
    }
    return 0;
}

static int refuse_add(struct plan_ctx *c, const struct mig_op *op)
{
    const struct mig_cat_enum *e = mig_catalog_enum(c->cat, op->schema, op->name);
    if (!e || !e->exists)
        return op_error(c, op, "type \"%s.%s\" does not exist; check its name and schema (\\dT lists them)",
                        op->schema, op->name);
    if (!e->is_enum)
        return op_error(c, op, "type \"%s.%s\" is not an enum type", op->schema, op->name);
    if (!op->if_not_exists && has_label(c, op, e, op->value) && !placed_as_asked(e, op))
        return op_error(c, op, "enum label \"%s\" already exists in type \"%s.%s\", and Postgres would refuse the "
                        "ADD VALUE (42710). Set \"if_not_exists\": true to add it only when it is missing",
                        op->value, op->schema, op->name);
    const char *next = op->before ? op->before : op->after;
    if (next && !has_label(c, op, e, next))
        return op_error(c, op, "\"%s\" is not an existing enum label of type \"%s.%s\" (22023); \"%s\" names the "
                        "value the new one goes next to", next, op->schema, op->name, op->before ? "before" : "after");
    return 0;
}

static void add_note(struct plan_ctx *c, const struct mig_op *op)
{
    char buf[512];
    snprintf(buf, sizeof buf, "operations[%d].add_enum_value: a rollback or a revert keeps value \"%s\" in type "
             "\"%s.%s\" (Postgres cannot remove a value from an enum); starting the migration again adds nothing",
             op->index, op->value, op->schema, op->name);
    char **grown = realloc(c->p->notes, (c->p->nnotes + 1) * sizeof *grown);
    if (!grown) {
        c->p->expand.oom = 1;
        return;
    }
    c->p->notes = grown;
    c->p->notes[c->p->nnotes] = strdup(buf);
    if (c->p->notes[c->p->nnotes])
        c->p->nnotes++;
}

static int plan_add_enum_value(struct plan_ctx *c, const struct mig_op *op)
{
    if (c->cat && refuse_add(c, op))
        return -1;
    struct mig_str s = {0};
    mig_str_add(&s, "ALTER TYPE ");
    mig_str_qname(&s, op->schema, op->name);
    mig_str_add(&s, " ADD VALUE IF NOT EXISTS ");
    mig_str_literal(&s, op->value);
    if (op->before || op->after) {
        mig_str_add(&s, op->before ? " BEFORE " : " AFTER ");
        mig_str_literal(&s, op->before ? op->before : op->after);
    }
    mig_steps_add(&c->first, op->index, MIG_STEP_ALONE, mig_str_take(&s));
    add_note(c, op);
    return 0;
}

const struct mig_op_def op_add_enum_value = {
    .kind = MIG_ADD_ENUM_VALUE, .plan = plan_add_enum_value, .changes_columns = 0,
};

/* The second column: a column whose type or values change gets a second
 * column at expand, kept in step by the tandem rule's trigger and filled by
 * the backfill, which takes the column's name at contract. Its dependents
 * are carried to it the way an offline ALTER TABLE takes them along
 * (migration_plan.h, "Take the second column"); what cannot follow is
 * refused first (plan_uncarried.c). */
#include "migration_plan.h"
#include "plan_ctx.h"
#include "migration_dependents.h"
#include "migration_names.h"
#include "ops/op.h"
#include "sql_fragment.h"
#include "sql_script.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static int constraint_then(const struct plan_ctx *c, const struct mig_op *op, const char *reg, const char *name,
                           char *out, size_t n);

/* The name index `name` has when op's contract runs: an ALTER INDEX ...
 * RENAME of an earlier `sql` operation, which runs at expand, renamed it
 * (52911-234: the table renamed, then its index, then the column
 * retyped). */
static void index_name_now(const struct plan_ctx *c, const struct mig_op *op, const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s", name);
    for (int i = 0; i < op->index && (size_t)i < c->m->nops; i++) {
        const struct mig_op *o = &c->m->ops[i];
        char to[80];
        if (o->kind == MIG_SQL && o->on == MIG_ON_START && o->up &&
            sql_index_renamed_to(o->up, op->schema, out, to, sizeof to))
            snprintf(out, n, "%s", to);
    }
}

/* Rebuilds every index on `from` over `to` (CONCURRENTLY, during expand) and
 * at contract gives it back the original name, or re-attaches the UNIQUE
 * constraint it backed (unless the migration drops that constraint: the
 * file then adds the key it wants itself). */
static void copy_indexes(struct plan_ctx *c, const struct mig_op *op, const char *table,
                         const char *from, const char *to)
{
    const struct mig_cat_table *t = table_of(c, op->schema, table);
    for (size_t i = 0; t && i < t->nidx; i++) {
        const struct mig_cat_index *ix = &t->idx[i];
        /* Other indexes on the column were refused before (refuse_uncarried_dependents). */
        if (!ix->simple || !index_uses(ix, from))
            continue;
        char self[400], then[80];
        snprintf(self, sizeof self, "%s.%s", op->schema, table);
        if (ix->constraint && constraint_then(c, op, self, ix->constraint, then, sizeof then))
            continue;
        char tmp[80], now[80];
        object_name(tmp, sizeof tmp, "ix", op, (int)i, c->m->name);
        index_name_now(c, op, ix->name, now, sizeof now);
        const struct mig_cat_table *parted = partitioned_table(c, op->schema, table);
        if (parted) {   /* one plain index without a constraint (refuse_on_partitioned) */
            carry_partitioned_index(c, op, parted, ix, now, from, to, tmp, (int)i);
            continue;
        }
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
            mig_str_ident(&s, then);
            mig_str_add(&s, ix->primary ? " PRIMARY KEY USING INDEX " : " UNIQUE USING INDEX ");
            mig_str_ident(&s, tmp);
            mig_steps_add(&c->p->contract, op->index, MIG_STEP_TXN, mig_str_take(&s));
        } else {
            rename_at_contract(c, op, table, 1, tmp, now);
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
        char self[400], then[80];
        snprintf(self, sizeof self, "%s.%s", op->schema, table);
        snprintf(then, sizeof then, "%s", d->name);     /* an index keeps its name */
        if (d->kind != MIG_DEP_INDEX && constraint_then(c, op, self, d->name, then, sizeof then))
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
        rename_at_contract(c, op, table, ix != NULL, tmp, then);
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

/* regclass text (quoted by Postgres, schema-qualified when the schema is
 * not on the search path) names schema.table. */
static int regclass_is(const char *reg, const char *schema, const char *table)
{
    /* Postgres quotes only names that need it; either spelling matches. */
    char *qs = mig_quote_ident(schema), *qt = mig_quote_ident(table);
    const char *schemas[2] = {schema, qs}, *tables[2] = {table, qt};
    int same = 0;
    for (int i = 0; i < 2 && !same; i++)
        for (int k = 0; k < 2 && !same; k++) {
            size_t n = schemas[i] ? strlen(schemas[i]) : 0;
            same = tables[k] && (!strcmp(reg, tables[k]) ||
                                 (n && !strncmp(reg, schemas[i], n) && reg[n] == '.' && !strcmp(reg + n + 1, tables[k])));
        }
    free(qs);
    free(qt);
    return same;
}

/* The table reg (regclass text, read before the migration ran) by the
 * name it has once the migration's rename_table operations before `upto`
 * ran: a renamed table leaves a view under its old name for the old
 * release, which a foreign key cannot reference nor ALTER TABLE address.
 * Later operations name the table by its new name (they follow the rename,
 * migration_renames_first.c), so the comparisons with them want it too.
 * Returns a new string: the new name quoted and qualified, or reg. */
static char *renamed_reg(const struct plan_ctx *c, const char *reg, size_t upto)
{
    const char *schema = NULL, *name = NULL;
    for (size_t i = 0; reg && i < upto && i < c->m->nops; i++) {
        const struct mig_op *o = &c->m->ops[i];
        if (o->kind != MIG_RENAME_TABLE || !o->from || !o->to)
            continue;
        /* a chain of renames (t to u, then u to v) follows the last name */
        if (name ? (!strcmp(o->schema, schema) && !strcmp(o->from, name)) : regclass_is(reg, o->schema, o->from)) {
            schema = o->schema;
            name = o->to;
        }
    }
    if (!reg)
        return NULL;
    return name ? mig_quote_qname(schema, name) : strdup(reg);
}

/* The column of the table reg (regclass text) that an alter_column of this
 * migration gives a second column, written into shadow; 0 when none does.
 * Foreign keys between two such columns join the two second columns. */
static int second_column_of(const struct plan_ctx *c, const char *reg, const char *col, char *shadow, size_t n)
{
    for (size_t i = 0; i < c->m->nops; i++) {
        const struct mig_op *o = &c->m->ops[i];
        if (o->kind == MIG_ALTER_COLUMN && !strcmp(o->column, col) && regclass_is(reg, o->schema, o->table) &&
            !alter_in_place(c, o)) {
            mig_shadow_name(shadow, n, col);
            return 1;
        }
    }
    return 0;
}

/* The constraint `name` of the table reg (regclass text) when op's
 * contract steps run: 1 when a drop_constraint before op takes it away,
 * under that name or one a rename_constraint between gave it (the new
 * shape has no such key, so it is not carried to the second column: how
 * Prisma changes a key's type, drop the foreign keys, retype both ends,
 * add them again); else 0, with the name the renames before op gave it in
 * out (their contract steps come first, and the copy on the second column
 * takes that name, as offline the renamed key follows its column's change:
 * 90012-66). */
static int constraint_then(const struct plan_ctx *c, const struct mig_op *op, const char *reg, const char *name,
                           char *out, size_t n)
{
    snprintf(out, n, "%s", name);
    for (size_t i = 0; i < (size_t)op->index && i < c->m->nops; i++) {
        const struct mig_op *o = &c->m->ops[i];
        if (!o->table || !regclass_is(reg, o->schema, o->table))
            continue;
        if (o->kind == MIG_DROP_CONSTRAINT && o->name && !strcmp(o->name, out))
            return 1;
        if (o->kind == MIG_RENAME_CONSTRAINT && o->from && o->to && !strcmp(o->from, out))
            snprintf(out, n, "%s", o->to);
    }
    return 0;
}

int column_until_contract(const struct plan_ctx *c, const struct mig_op *op, const char *schema, const char *table,
                          const char *col, char *out, size_t n)
{
    for (size_t i = 0; i < (size_t)op->index && i < c->m->nops; i++) {
        const struct mig_op *o = &c->m->ops[i];
        if (o->kind == MIG_ALTER_COLUMN && !alter_in_place(c, o) && !strcmp(o->schema, schema) &&
            !strcmp(o->table, table) && !strcmp(o->column, col)) {
            mig_shadow_name(out, n, col);
            return 1;
        }
        /* a column added under the name an earlier rename frees is its
         * second column until the contract names it (op_add_column.c) */
        if (o->kind == MIG_ADD_COLUMN && !strcmp(o->schema, schema) && !strcmp(o->table, table) &&
            !strcmp(o->col.name, col) && mig_add_column_freed_by(c->m, o)) {
            mig_shadow_name(out, n, col);
            return 1;
        }
    }
    snprintf(out, n, "%s", col);
    return 0;
}

int expr_reads_retyped(const struct plan_ctx *c, const struct mig_op *op, const char *expr, char *col, size_t n)
{
    char **names = NULL, shadow[80];
    size_t k = 0;
    int star = 0, hit = 0;
    if (sql_fragment_columns(expr, &names, &k, &star) != SQL_FRAGMENT_OK) {
        snprintf(col, n, "?");
        return 1;
    }
    for (size_t i = 0; i < k && !hit; i++)
        if ((hit = column_until_contract(c, op, op->schema, op->table, names[i], shadow, sizeof shadow)))
            snprintf(col, n, "%s", names[i]);
    sql_fragment_free_names(names, k);
    return hit;
}

char *expr_on_second_columns(const struct plan_ctx *c, const struct mig_op *op, const char *expr)
{
    char **names = NULL;
    size_t k = 0, n = 0;
    int star = 0;
    if (sql_fragment_columns(expr, &names, &k, &star) != SQL_FRAGMENT_OK || star) {
        sql_fragment_free_names(names, k);
        return NULL;
    }
    const char **from = calloc(k ? k : 1, sizeof *from);
    char **to = calloc(k ? k : 1, sizeof *to);
    int ok = from && to;
    for (size_t i = 0; ok && i < k; i++) {
        char held[80];
        if (!column_until_contract(c, op, op->schema, op->table, names[i], held, sizeof held))
            continue;
        from[n] = names[i];
        ok = (to[n++] = strdup(held)) != NULL;
    }
    char *out = !ok ? NULL : n ? sql_fragment_rename_columns(expr, from, (const char *const *)to, n) : strdup(expr);
    for (size_t i = 0; to && i < n; i++)
        free(to[i]);
    free(to);
    free(from);
    sql_fragment_free_names(names, k);
    return out;
}

/* ALTER TABLE owner ADD CONSTRAINT name FOREIGN KEY (col) REFERENCES
 * target (target_col), with f's actions, NOT VALID. owner and target come
 * quoted: one is the table, the other regclass output (Postgres quoted
 * it). */
static char *foreign_key_sql(const char *owner, const char *name, const char *col, const char *target,
                             const char *target_col, const struct mig_cat_fkey *f)
{
    if (!owner || !target)
        return NULL;
    struct mig_str s = {0};
    mig_str_addf(&s, "ALTER TABLE %s ADD CONSTRAINT ", owner);
    mig_str_ident(&s, name);
    mig_str_add(&s, " FOREIGN KEY (");
    mig_str_ident(&s, col);
    mig_str_addf(&s, ") REFERENCES %s (", target);
    mig_str_ident(&s, target_col);
    mig_str_addf(&s, ") ON DELETE %s ON UPDATE %s NOT VALID", mig_fk_action(f->on_delete),
                 mig_fk_action(f->on_update));
    return mig_str_take(&s);
}

static void copy_foreign_keys(struct plan_ctx *c, const struct mig_op *op, const char *table,
                              const char *from, const char *to)
{
    const struct mig_cat_table *t = table_of(c, op->schema, table);
    for (size_t i = 0; t && i < t->nfk; i++) {
        const struct mig_cat_fkey *f = &t->fk[i];
        char ref_shadow[80], self[400], then[80];
        if (strcmp(f->column, from) != 0)
            continue;
        snprintf(self, sizeof self, "%s.%s", op->schema, table);
        if (constraint_then(c, op, self, f->name, then, sizeof then))
            continue;
        /* the referenced table as the operations name it, and as it is
         * called when this operation's expand runs */
        char *ref_final = renamed_reg(c, f->ref_table, c->m->nops);
        char *ref_now = renamed_reg(c, f->ref_table, (size_t)op->index);
        if (ref_final && second_column_of(c, ref_final, f->ref_column, ref_shadow, sizeof ref_shadow)) {
            carried(c, op, "foreign key \"%s\": joins \"%s\" to the referenced key's second column, with it",
                    f->name, to);
            free(ref_final);
            free(ref_now);
            continue;
        }
        char tmp[80];
        object_name(tmp, sizeof tmp, "fk", op, (int)i, c->m->name);
        carried(c, op, "foreign key \"%s\": added NOT VALID on \"%s\" at expand, validated after the backfill, "
                "renamed at contract", f->name, to);
        char *owner = mig_quote_qname(op->schema, table);
        mig_steps_add(&c->p->expand, op->index, MIG_STEP_TXN, foreign_key_sql(owner, tmp, to, ref_now, f->ref_column, f));
        free(owner);
        free(ref_final);
        free(ref_now);
        add_alter(&c->p->validate, op, table, "VALIDATE CONSTRAINT", tmp, "");
        rename_at_contract(c, op, table, 0, tmp, then);
    }
}

/* ALTER TABLE reg <what> name: one step into l (NULL reg: out of memory). */
static void alter_reg(struct mig_steps *l, const struct mig_op *op, const char *reg, const char *what,
                      const char *name, const char *to)
{
    if (!reg) {
        mig_steps_add(l, op->index, MIG_STEP_TXN, NULL);
        return;
    }
    struct mig_str s = {0};
    mig_str_addf(&s, "ALTER TABLE %s %s ", reg, what);
    mig_str_ident(&s, name);
    if (to) {
        mig_str_add(&s, " TO ");
        mig_str_ident(&s, to);
    }
    mig_steps_add(l, op->index, MIG_STEP_TXN, mig_str_take(&s));
}

/* Foreign keys of other tables that point at `from` are re-pointed at `to`.
 * They are added after the backfill (validate phase): earlier, a new
 * referencing row could point at a row whose new column is still NULL.
 * The referencing table is named as it is called when each step runs: the
 * validation and the contract after every rename_table of the migration,
 * the rollback (undoing later operations first) after those before op. */
static void copy_incoming_foreign_keys(struct plan_ctx *c, const struct mig_op *op, const char *table,
                                       const char *from, const char *to, struct mig_steps *contract_before_drop,
                                       struct mig_steps *contract_after_drop)
{
    const struct mig_cat_table *t = table_of(c, op->schema, table);
    for (size_t i = 0; t && i < t->nin_fk; i++) {
        const struct mig_cat_fkey *f = &t->in_fk[i];
        if (strcmp(f->column, from) != 0)
            continue;
        char *ref_final = renamed_reg(c, f->ref_table, c->m->nops);
        char *ref_now = renamed_reg(c, f->ref_table, (size_t)op->index);
        char then[80];
        if (!ref_final || !ref_now || constraint_then(c, op, ref_now, f->name, then, sizeof then)) {
            if (!ref_final || !ref_now)
                mig_steps_add(&c->p->validate, op->index, MIG_STEP_TXN, NULL);
            free(ref_final);
            free(ref_now);
            continue;
        }
        char tmp[80], referencing[80];
        object_name(tmp, sizeof tmp, "rf", op, (int)i, c->m->name);
        if (!second_column_of(c, ref_final, f->ref_column, referencing, sizeof referencing))
            snprintf(referencing, sizeof referencing, "%s", f->ref_column);
        carried(c, op, "foreign key \"%s\" pointing at the column: re-pointed at \"%s\" after the backfill "
                "(NOT VALID, then validated), renamed at contract", f->name, to);
        char *target = mig_quote_qname(op->schema, table);
        mig_steps_add(&c->p->validate, op->index, MIG_STEP_TXN,
                      foreign_key_sql(ref_final, tmp, referencing, target, to, f));
        free(target);
        alter_reg(&c->p->validate, op, ref_final, "VALIDATE CONSTRAINT", tmp, NULL);
        /* IF EXISTS: an earlier operation's contract may have dropped the
         * referencing column, and its key with it. */
        constraint_then(c, op, f->ref_table, f->name, then, sizeof then);  /* named as the catalog has it */
        alter_reg(contract_before_drop, op, ref_final, "DROP CONSTRAINT IF EXISTS", then, NULL);
        alter_reg(contract_after_drop, op, ref_final, "RENAME CONSTRAINT", tmp, then);
        alter_reg(&c->p->rollback, op, ref_now, "DROP CONSTRAINT IF EXISTS", tmp, NULL);
        free(ref_final);
        free(ref_now);
    }
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

/* Bytes of an integer type a sequence can have, 0 for any other type. */
static int integer_width(const char *type)
{
    if (!type)
        return 0;
    if (!strcmp(type, "smallint") || !strcmp(type, "int2"))
        return 2;
    if (!strcmp(type, "integer") || !strcmp(type, "int") || !strcmp(type, "int4"))
        return 4;
    if (!strcmp(type, "bigint") || !strcmp(type, "int8"))
        return 8;
    return 0;
}

static void add_sequence_sql(struct mig_steps *l, const struct mig_op *op, const char *fmt, const char *seq,
                             const char *a)
{
    struct mig_str s = {0};
    mig_str_addf(&s, fmt, seq, a);
    mig_steps_add(l, op->index, MIG_STEP_TXN, mig_str_take(&s));
}

/* The column's sequence goes to the second column, the way an offline
 * ALTER COLUMN ... TYPE keeps it, and a key that was running out of room
 * gets it: until the contract the sequence keeps the old type's bounds, so
 * it never hands the old release a value its column cannot hold; the
 * contract widens it with the column.
 * Until then only the original draws from the sequence; the trigger gives
 * the second column the value it drew (dual_write.drawn), so an insert of
 * either release takes one value.
 *  - serial (a sequence the column owns): before the original is dropped
 *    the sequence is owned by the second column, which takes its default,
 *    and AS the new type when that is wider (an offline ALTER COLUMN leaves
 *    a serial's sequence AS integer: inserts stop at 2,147,483,647
 *    although the column could go on).
 *  - identity: Postgres drops an identity's sequence with its column, so the
 *    contract keeps the sequence's position in a transaction-local setting,
 *    drops the original, makes the second column the identity under the
 *    same sequence name with the same options, and sets the position back. */
static void carry_sequence(struct plan_ctx *c, const struct mig_op *op, const char *table,
                          const struct mig_cat_column *oc, const char *to, const char *type, int copy_default,
                          struct mig_steps *before_drop)
{
    if (!oc || !oc->sequence)
        return;
    int old_w = integer_width(oc->sequence_type), new_w = integer_width(type);
    struct mig_str lit = {0}, col = {0};
    mig_str_literal(&lit, oc->sequence);
    mig_str_qname(&col, op->schema, table);
    mig_str_add(&col, ".");
    mig_str_ident(&col, to);
    char *seq_lit = mig_str_take(&lit), *owner = mig_str_take(&col);
    if (!oc->identity) {
        add_sequence_sql(before_drop, op, "ALTER SEQUENCE %s OWNED BY %s", oc->sequence, owner);
        if (copy_default && oc->default_expr)
            add_set_default(before_drop, op, table, to, oc->default_expr);
        if (old_w && new_w > old_w)
            add_sequence_sql(before_drop, op, "ALTER SEQUENCE %s AS %s", oc->sequence, type);
        carried(c, op, old_w && new_w > old_w ? "sequence %s: owned by \"%s\" at contract, and made as wide "
                "as its new type" : "sequence %s: owned by \"%s\" at contract", oc->sequence, to);
    } else {
        char setting[64];
        snprintf(setting, sizeof setting, "pgtandem.identity_%d", op->index);
        struct mig_str k = {0};
        mig_str_addf(&k, "SELECT set_config('%s', (SELECT last_value || ',' || is_called FROM %s), true)",
                     setting, oc->sequence);
        mig_steps_add(before_drop, op->index, MIG_STEP_TXN, mig_str_take(&k));
        struct mig_str g = {0};
        mig_str_addf(&g, " ADD GENERATED %s AS IDENTITY (SEQUENCE NAME %s %s)",
                     oc->identity == 'a' ? "ALWAYS" : "BY DEFAULT", oc->sequence,
                     oc->sequence_options ? oc->sequence_options : "");
        char *tail = mig_str_take(&g);
        add_alter(&c->p->contract, op, table, "ALTER COLUMN", to, tail ? tail : "");
        free(tail);
        struct mig_str v = {0};
        mig_str_addf(&v, "SELECT setval(%s::regclass, split_part(current_setting('%s'), ',', 1)::bigint, "
                     "split_part(current_setting('%s'), ',', 2)::boolean)", seq_lit, setting, setting);
        mig_steps_add(&c->p->contract, op->index, MIG_STEP_TXN, mig_str_take(&v));
        carried(c, op, "identity (sequence %s): \"%s\" takes the value the original drew until the contract, "
                "which makes it the identity under the same sequence, at the same position", oc->sequence, to);
    }
    free(seq_lit);
    free(owner);
}

/* Shared by rename_column and alter_column: a real second column kept in sync
 * by a trigger, filled by the backfill, with the old column's indexes, foreign
 * keys, NOT NULL, default and comment copied over. */
int expand_second_column(struct plan_ctx *c, const struct mig_op *op, const struct shadow_spec *sp,
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
    /* A sequence's default stays on the original alone until the contract
     * (carry_sequence): the trigger gives a new-shape insert the value the
     * original drew. */
    int drawn = sp->copy_dependents && oc && oc->sequence;
    if (sp->copy_default && oc && oc->default_expr && !drawn) {
        carried(c, op, "default %s: set on \"%s\" at expand", oc->default_expr, sp->to);
        add_set_default(&c->p->expand, op, sp->table, sp->to, oc->default_expr);
    }
    /* known from here on: the trigger's conditions name it */
    remember_column(c, op->schema, sp->table, sp->to, type);
    struct dual_write dw = {sp->table, sp->from, sp->to, type, up, down,
                            op->kind == MIG_ALTER_COLUMN ? op->column : NULL, sp->copy_only, drawn};
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
        carry_sequence(c, op, sp->table, oc, sp->to, type, sp->copy_default, &contract);
    }
    *deferred = c->p->contract;
    c->p->contract = contract;
    add_backfill(c, op, sp->table, sp->to, type, sp->up ? NULL : sp->from, up, 1);
    return 0;
}

/* The operation's "default": the new column's default, set at expand so
 * writes through the new shape get it while the migration runs (null: the
 * new column has none). */
void set_new_default(struct plan_ctx *c, const struct mig_op *op, const char *col)
{
    if (op->has_default && op->default_expr)
        add_set_default(&c->p->expand, op, op->table, col, op->default_expr);
}

/* The contract's part of a second column: the views reading the original
 * dropped (carry_views), the original dropped, then the steps
 * expand_second_column deferred, which reuse the names of the original's
 * dependents. views gets the views' creation, which the caller places
 * where the second column wears the name they must read. */
int contract_second_column(struct plan_ctx *c, const struct mig_op *op, const char *col,
                           struct mig_steps *deferred, struct mig_steps *views)
{
    if (carry_views(c, op, op->table, col, &c->p->contract, views) != 0) {
        mig_steps_free(deferred);
        return -1;
    }
    add_alter(&c->p->contract, op, op->table, "DROP COLUMN", col, "");
    append_steps(&c->p->contract, deferred);
    return 0;
}

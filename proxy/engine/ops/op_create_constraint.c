/* create_constraint: a PRIMARY KEY, UNIQUE, CHECK or FOREIGN KEY
 * constraint without a scan under a lock that stops writes, named as
 * Postgres names it offline when the operation gives no name (t_c_key,
 * t_pkey, t_c_check, t_c_fkey: plan_pg_names.c).
 *
 * UNIQUE: its index is built CONCURRENTLY at expand (under a temporary
 * name when the operation names none) and becomes the constraint at
 * contract (ADD CONSTRAINT ... UNIQUE USING INDEX). PRIMARY KEY: the same,
 * and NOT NULL on each column that lacks it as a CHECK (col IS NOT NULL)
 * NOT VALID, validated after the backfill, which lets the contract's SET
 * NOT NULL skip its scan; the contract then drops the checks and attaches
 * the index (ADD CONSTRAINT ... PRIMARY KEY USING INDEX, a catalog change).
 * Refused before any DDL: a table that has a primary key, a partitioned
 * table (its index cannot be built CONCURRENTLY). CHECK and FOREIGN KEY:
 * added NOT VALID at expand, so rows either release writes from then on
 * are checked, and validated after the backfill (SHARE UPDATE EXCLUSIVE:
 * reads and writes go on). The rollback drops what expand made.
 *
 * Changed under the same name (a drop_constraint of it earlier in the
 * migration: how Prisma and drizzle-kit change a foreign key's ON DELETE,
 * a CHECK's expression, a UNIQUE's columns): the old one stays until the
 * contract, since the old release relies on it, so the new one cannot
 * have its name at expand. It is made under a temporary name
 * (pgtandem_fk<i>_<migration>, _ck, _uq) and is validated as any other;
 * the contract drops the old one (the earlier operation) and then renames
 * the new one (RENAME CONSTRAINT, or the index's rename by ADD CONSTRAINT
 * ... USING INDEX), both catalog changes. Until then both are enforced: a
 * row either release writes must satisfy both (the old key's RESTRICT
 * still refuses a delete the new key would cascade, as the old release
 * expects), and no row that breaks the new one gets in. The rollback drops
 * the temporary one only, so the old one is there after a failed or
 * rolled-back start. A name still taken at the contract is refused before
 * any DDL (plan_constraints.c). */
#include "ops/op.h"
#include "migration_plan.h"
#include "plan_ctx.h"

#include <stdlib.h>
#include <string.h>

static int create_table_has_key(const struct mig_op *o)
{
    for (size_t k = 0; k < o->ncols; k++)
        if (o->cols[k].primary_key == 1)
            return 1;
    for (size_t k = 0; k < o->ncons; k++)
        if (!strcmp(o->cons[k].type, "primary_key"))
            return 1;
    return 0;
}

/* Another operation of this migration, before op, that gives table a
 * primary key (a create_constraint, or the create_table that makes it). */
static const struct mig_op *earlier_primary_key(const struct plan_ctx *c, const struct mig_op *op)
{
    for (int i = 0; i < op->index && (size_t)i < c->m->nops; i++) {
        const struct mig_op *o = &c->m->ops[i];
        if (strcmp(o->schema, op->schema) != 0 || !o->table || strcmp(o->table, op->table) != 0)
            continue;
        if (o->kind == MIG_CREATE_CONSTRAINT && !strcmp(o->constraint_type, "primary_key"))
            return o;
        if (o->kind == MIG_CREATE_TABLE && create_table_has_key(o))
            return o;
    }
    return NULL;
}

/* The constraint name of op's table is gone by the contract: an earlier
 * drop_constraint (or rename_constraint) of the migration takes it away. */
static int dropped_before(const struct plan_ctx *c, const struct mig_op *op, const char *name)
{
    struct constraint_now k;
    if (!name)
        return 0;
    constraint_now(c, op, op->table, name, &k);
    return !k.exists && k.gone_by;
}

static int refuse_primary_key(struct plan_ctx *c, const struct mig_op *op)
{
    const struct mig_cat_table *t = table_of(c, op->schema, op->table);
    for (size_t i = 0; t && i < t->nidx; i++)
        if (t->idx[i].primary && !dropped_before(c, op, t->idx[i].constraint))
            return op_error(c, op, "table \"%s.%s\" already has a primary key (%s); a table has one. Drop it "
                            "first, or add a unique constraint instead", op->schema, op->table,
                            t->idx[i].constraint ? t->idx[i].constraint : t->idx[i].name);
    const struct mig_op *o = earlier_primary_key(c, op);
    if (o)
        return op_error(c, op, "operations[%d] already gives table \"%s.%s\" a primary key", o->index,
                        op->schema, op->table);
    if (t && t->relkind == 'p')
        return op_error(c, op, "table \"%s.%s\" is partitioned: Postgres cannot build its index CONCURRENTLY "
                        "(\"cannot create index on partitioned table concurrently\"), and ADD PRIMARY KEY would "
                        "build it under ACCESS EXCLUSIVE. Add the key to each partition online, then to the "
                        "parent in an \"sql\" operation", op->schema, op->table);
    return 0;
}

/* ADD CONSTRAINT name {UNIQUE|PRIMARY KEY} USING INDEX ix, at contract. */
static void attach_index(struct plan_ctx *c, const struct mig_op *op, const char *name, const char *kind,
                         const char *ix)
{
    struct mig_str s = {0};
    mig_str_addf(&s, " %s USING INDEX ", kind);
    mig_str_ident(&s, ix);
    mig_str_addf(&s, "%s%s", op->deferrable ? " DEFERRABLE" : "", op->initially_deferred ? " INITIALLY DEFERRED" : "");
    char *tail = mig_str_take(&s);
    add_alter(&c->p->contract, op, op->table, "ADD CONSTRAINT", name, tail ? tail : "");
    free(tail);
}

/* ALTER TABLE ... RENAME CONSTRAINT tmp TO name, at contract, after the
 * earlier operation's drop has freed the name. */
static void rename_at_contract(struct plan_ctx *c, const struct mig_op *op, const char *tmp, const char *name)
{
    struct mig_str s = {0};
    mig_str_add(&s, " TO ");
    mig_str_ident(&s, name);
    char *tail = mig_str_take(&s);
    add_alter(&c->p->contract, op, op->table, "RENAME CONSTRAINT", tmp, tail ? tail : "");
    free(tail);
}

/* The columns a key of this migration is built on while it runs: each one's
 * second column where an earlier alter_column retypes it (the key must
 * survive the contract, which drops the original), else the column. */
struct held_columns {
    char **name;
    int any_second;   /* one of them is a second column */
};

static void free_held_columns(struct held_columns *h, size_t n)
{
    for (size_t k = 0; h->name && k < n; k++)
        free(h->name[k]);
    free(h->name);
    h->name = NULL;
}

static int hold_columns(const struct plan_ctx *c, const struct mig_op *op, const char *schema, const char *table,
                        char *const *cols, size_t n, struct held_columns *h)
{
    h->any_second = 0;
    h->name = calloc(n ? n : 1, sizeof *h->name);
    for (size_t k = 0; h->name && k < n; k++) {
        char out[80];
        h->any_second |= column_until_contract(c, op, schema, table, cols[k], out, sizeof out);
        if (!(h->name[k] = strdup(out))) {
            free_held_columns(h, n);
            break;
        }
    }
    return h->name ? 0 : -1;
}

static int plan_index_backed(struct plan_ctx *c, const struct mig_op *op)
{
    int primary = !strcmp(op->constraint_type, "primary_key");
    if (primary && refuse_primary_key(c, op))
        return -1;
    char name[80], ix[80];
    int later = 0; /* the name is taken until the contract */
    if (op->name) {
        snprintf(name, sizeof name, "%s", op->name);
        take_name(c, op->schema, name, 1);
        if ((later = constraint_name_at_expand(c, op, name, 1)) < 0)
            return -1;
    } else {
        choose_key_name(c, op->schema, op->table, op->columns, op->ncolumns, primary, name, sizeof name);
    }
    /* A named UNIQUE constraint's index is built under its name when it is
     * free; ADD CONSTRAINT ... USING INDEX renames a temporary one. */
    if (op->name && !primary && !later)
        snprintf(ix, sizeof ix, "%s", op->name);
    else
        object_name(ix, sizeof ix, primary ? "pk" : "uq", op, -1, c->m->name);
    struct held_columns cols;
    if (hold_columns(c, op, op->schema, op->table, op->columns, op->ncolumns, &cols) != 0)
        return op_error(c, op, "out of memory");
    add_index_build(&c->p->expand, op, op->schema, ix,
                    index_sql(op->schema, op->table, ix, 1, NULL, cols.name, op->ncolumns, NULL, NULL, NULL));
    free_held_columns(&cols, op->ncolumns);
    mig_steps_add(&c->p->rollback, op->index, MIG_STEP_ALONE, drop_index_sql(op->schema, ix, 1));
    for (size_t k = 0; primary && k < op->ncolumns; k++) {
        const struct mig_cat_column *oc = mig_catalog_column(table_of(c, op->schema, op->table), op->columns[k]);
        if (oc && oc->notnull)
            continue;
        char cname[80];
        add_not_null_check_k(c, op, op->table, op->columns[k], (int)k, cname);
        add_alter(&c->p->rollback, op, op->table, "DROP CONSTRAINT IF EXISTS", cname, "");
    }
    attach_index(c, op, name, primary ? "PRIMARY KEY" : "UNIQUE", ix);
    return 0;
}

/* A foreign key of a partitioned table: each leaf partition's NOT VALID,
 * validated, then attached by the table's own (plan_partitions.c); under
 * a temporary name, the table's and each partition's renamed at the
 * contract. Not between second columns, which the backfill fills after
 * the leaves' keys would check them. */
static int partitioned_foreign_key(struct plan_ctx *c, const struct mig_op *op, const struct mig_cat_table *t,
                                   struct mig_str *definition, const char *now, const char *name,
                                   int after_backfill)
{
    char *def = mig_str_take(definition);
    int rc = !def ? op_error(c, op, "out of memory")
             : after_backfill ? op_error(c, op, "foreign key \"%s\" of partitioned table \"%s.%s\" is between "
                                         "columns this migration carries to second columns, where a partitioned "
                                         "table's key is attached from its partitions' before the backfill fills "
                                         "them; write it in a migration after this one", name, op->schema, op->table)
             : build_partitioned_foreign_key(c, op, t, now, name, def);
    free(def);
    if (rc == 0 && strcmp(now, name) != 0)
        rename_at_contract(c, op, now, name);
    return rc;
}

static int plan_create_constraint(struct plan_ctx *c, const struct mig_op *op)
{
    if (require_table(c, op, op->table))
        return -1;
    if (require_columns(c, op, op->table, op->columns, op->ncolumns))
        return -1;
    if (op->ref_table && require_table(c, op, op->ref_table))
        return -1;
    if (!strcmp(op->constraint_type, "unique") || !strcmp(op->constraint_type, "primary_key"))
        return plan_index_backed(c, op);
    char name[80], now[80], col[80];
    int check = strcmp(op->constraint_type, "check") == 0;
    /* a column retyped earlier: the check reads its second column, which
     * takes the column's name at the contract */
    char *held_check = check && op->check ? expr_on_second_columns(c, op, op->check) : NULL;
    if (check && op->check && !held_check && expr_reads_retyped(c, op, op->check, col, sizeof col))
        return op_error(c, op, "CHECK (%s) reads column \"%s\" of \"%s\", whose type an earlier operation of this "
                        "migration changes, in a way that cannot be read over its second column (where its new "
                        "values are until the contract): add the constraint in the next migration", op->check, col,
                        op->table);
    if (op->name) {
        snprintf(name, sizeof name, "%s", op->name);
        take_name(c, op->schema, name, 0);
    } else if (check) {
        choose_check_name(c, op->schema, op->table, op->check, name, sizeof name);
    } else {
        choose_fkey_name(c, op->schema, op->table, op->columns, op->ncolumns, name, sizeof name);
    }
    int later = constraint_name_at_expand(c, op, name, 0);
    if (later < 0) {
        free(held_check);
        return -1;
    }
    if (later)
        object_name(now, sizeof now, check ? "ck" : "fk", op, -1, c->m->name);
    else
        snprintf(now, sizeof now, "%s", name);
    struct mig_str s = {0};
    struct held_columns from = {0}, to = {0};
    if (check) {
        mig_str_addf(&s, " CHECK (%s) NOT VALID", held_check ? held_check : op->check);
        free(held_check);
    } else {
        if (hold_columns(c, op, op->schema, op->table, op->columns, op->ncolumns, &from) != 0 ||
            hold_columns(c, op, op->schema, op->ref_table, op->ref_columns, op->nref_columns, &to) != 0) {
            free_held_columns(&from, op->ncolumns);
            return op_error(c, op, "out of memory");
        }
        mig_str_add(&s, " FOREIGN KEY ");
        column_list(&s, from.name, op->ncolumns);
        mig_str_add(&s, " REFERENCES ");
        mig_str_qname(&s, op->schema, op->ref_table);
        mig_str_add(&s, " ");
        column_list(&s, to.name, op->nref_columns);
        free_held_columns(&from, op->ncolumns);
        free_held_columns(&to, op->nref_columns);
        if (op->on_delete)
            mig_str_addf(&s, " ON DELETE %s", op->on_delete);
        if (op->on_update)
            mig_str_addf(&s, " ON UPDATE %s", op->on_update);
    }
    /* between second columns, only once the backfill has filled them: a
     * row either release writes before would point at a row whose second
     * column is still NULL (as the carried keys, plan_carry.c) */
    int after_backfill = from.any_second || to.any_second;
    const struct mig_cat_table *parted = check ? NULL : partitioned_table(c, op->schema, op->table);
    if (parted)
        return partitioned_foreign_key(c, op, parted, &s, now, name, after_backfill);
    if (!check)
        mig_str_add(&s, " NOT VALID");
    char *tail = mig_str_take(&s);
    add_alter(after_backfill ? &c->p->validate : &c->p->expand, op, op->table, "ADD CONSTRAINT", now,
              tail ? tail : "");
    free(tail);
    add_alter(&c->p->validate, op, op->table, "VALIDATE CONSTRAINT", now, "");
    add_alter(&c->p->rollback, op, op->table, "DROP CONSTRAINT IF EXISTS", now, "");
    if (later)
        rename_at_contract(c, op, now, name);
    return 0;
}

const struct mig_op_def op_create_constraint = {
    .kind = MIG_CREATE_CONSTRAINT, .plan = plan_create_constraint, .changes_columns = 0,
};

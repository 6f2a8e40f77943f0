/* The expand's locks taken up front, children first.
 *
 * An expand transaction takes its locks statement by statement: a table
 * renamed first is held ACCESS EXCLUSIVE while a later ADD CONSTRAINT ...
 * FOREIGN KEY waits for SHARE ROW EXCLUSIVE on a child table. The app's
 * INSERT into that child holds ROW EXCLUSIVE on it and, to check its
 * foreign key, waits for the parent we hold: each waits for the other until
 * the expand's lock_timeout gives up (200 ms by default), and every retry
 * can meet the next INSERT the same way (Dokploy's `0120`, a table renamed
 * and ten foreign keys moved to it: the old release's INSERTs waited 205 ms,
 * five attempts in a row). Taken first in one statement, children before
 * the tables they reference, the expand waits for an INSERT in flight
 * without holding what it needs; the next INSERTs wait for the expand,
 * which holds nothing they hold. The mode is the strongest the expand's
 * statements take on that table (ACCESS EXCLUSIVE for ALTER TABLE's column
 * and CHECK changes and renames, SHARE ROW EXCLUSIVE for a foreign key's
 * two tables and a trigger), so nothing is blocked that the expand would
 * not block anyway, only earlier in its transaction. Tables the migration
 * creates are not there yet; a table that does not exist is skipped. */
#include "expand_locks.h"

#include <stdlib.h>
#include <string.h>

#include "migration_sql.h"

enum lock_mode { LOCK_NONE, LOCK_SHARE_ROW_EXCLUSIVE, LOCK_ACCESS_EXCLUSIVE };

struct locked {
    const char *schema, *table; /* as the catalog names it before the expand */
    enum lock_mode mode;
    int parent;                 /* referenced by a foreign key the expand adds: locked after the others */
};

struct lock_list {
    struct locked *v;
    size_t n, cap;
    char **names;               /* parents' names cut out of "table(column)", which v may point into */
    size_t nnames;
    int oom;
};

/* The name a table has before the expand: renames of this migration before
 * op followed back; NULL for one it creates. */
static const char *name_before(const struct migration *m, size_t upto, const char *schema, const char *table)
{
    for (size_t i = upto; i-- > 0;) {
        const struct mig_op *o = &m->ops[i];
        if (strcmp(o->schema, schema) != 0)
            continue;
        if (o->kind == MIG_RENAME_TABLE && o->to && o->from && !strcmp(o->to, table))
            table = o->from;
        else if (o->kind == MIG_CREATE_TABLE && o->table && !strcmp(o->table, table))
            return NULL;
    }
    return table;
}

static void add(struct lock_list *l, const struct migration *m, size_t at, const char *schema, const char *table,
                enum lock_mode mode, int parent)
{
    table = table ? name_before(m, at, schema, table) : NULL;
    if (!table)
        return;
    for (size_t i = 0; i < l->n; i++) {
        if (!strcmp(l->v[i].schema, schema) && !strcmp(l->v[i].table, table)) {
            if (mode > l->v[i].mode)
                l->v[i].mode = mode;
            l->v[i].parent |= parent;
            return;
        }
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        struct locked *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            l->oom = 1;
            return;
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = (struct locked){schema, table, mode, parent};
}

/* A foreign key's parent: create_constraint's table, or add_column's
 * "table" or "table(column)" (check_reference's form, in the op's schema). */
static void add_referenced(struct lock_list *l, const struct migration *m, size_t at, const char *schema,
                           const char *ref)
{
    const char *open = ref ? strchr(ref, '(') : NULL;
    if (open) {
        char **names = realloc(l->names, (l->nnames + 1) * sizeof *names);
        char *name = names ? strndup(ref, (size_t)(open - ref)) : NULL;
        if (names)
            l->names = names;
        if (!name) {
            l->oom = 1;
            return;
        }
        l->names[l->nnames++] = name;
        ref = name;
    }
    add(l, m, at, schema, ref, LOCK_SHARE_ROW_EXCLUSIVE, 1);
}

static void collect(struct lock_list *l, const struct migration *m)
{
    for (size_t i = 0; i < m->nops; i++) {
        const struct mig_op *o = &m->ops[i];
        const char *s = o->schema;
        switch (o->kind) {
        case MIG_ADD_COLUMN:
            add(l, m, i, s, o->table, LOCK_ACCESS_EXCLUSIVE, 0);
            add_referenced(l, m, i, s, o->col.references);
            break;
        case MIG_ALTER_COLUMN:
        case MIG_RENAME_COLUMN: add(l, m, i, s, o->table, LOCK_ACCESS_EXCLUSIVE, 0); break;
        case MIG_RENAME_TABLE: add(l, m, i, s, o->from, LOCK_ACCESS_EXCLUSIVE, 0); break;
        case MIG_DROP_COLUMN: add(l, m, i, s, o->table, LOCK_SHARE_ROW_EXCLUSIVE, 0); break;
        case MIG_CREATE_CONSTRAINT:
            if (o->constraint_type && !strcmp(o->constraint_type, "check")) {
                add(l, m, i, s, o->table, LOCK_ACCESS_EXCLUSIVE, 0);
            } else if (o->constraint_type && !strcmp(o->constraint_type, "foreign_key")) {
                add(l, m, i, s, o->table, LOCK_SHARE_ROW_EXCLUSIVE, 0);
                add_referenced(l, m, i, s, o->ref_table);
            }
            break;
        default: break;
        }
    }
}

static void lock_one(struct mig_str *q, const struct locked *t)
{
    struct mig_str name = {0};
    mig_str_qname(&name, t->schema, t->table);
    char *qname = mig_str_take(&name);
    if (!qname)
        return;
    mig_str_add(q, "IF to_regclass(");
    mig_str_literal(q, qname);
    mig_str_addf(q, ") IS NOT NULL THEN LOCK TABLE %s IN %s MODE; END IF;\n", qname,
                 t->mode == LOCK_ACCESS_EXCLUSIVE ? "ACCESS EXCLUSIVE" : "SHARE ROW EXCLUSIVE");
    free(qname);
}

char *expand_lock_sql(const struct migration *m)
{
    struct lock_list l = {0};
    collect(&l, m);
    char *sql = NULL;
    if (!l.oom && l.n > 0) {
        struct mig_str q = {0};
        mig_str_add(&q, "DO $pgtandem_locks$ BEGIN\n");
        for (int parents = 0; parents <= 1; parents++)
            for (size_t i = 0; i < l.n; i++)
                if (l.v[i].parent == parents)
                    lock_one(&q, &l.v[i]);
        mig_str_add(&q, "END $pgtandem_locks$");
        sql = mig_str_take(&q);
    }
    for (size_t i = 0; i < l.nnames; i++)
        free(l.names[i]);
    free(l.names);
    free(l.v);
    return sql;
}

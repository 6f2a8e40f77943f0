/* Partitioned tables. Postgres cannot build a partitioned table's index
 * CONCURRENTLY, and a plain CREATE INDEX there holds every partition's
 * writes while each partition's index is built. The online way is the one
 * Postgres documents under CREATE INDEX: the parent's index ON ONLY (a
 * catalog change; it stays invalid), each partition's built CONCURRENTLY
 * and attached to it (ALTER INDEX ... ATTACH PARTITION, a catalog change);
 * once every partition's is attached, Postgres marks the parent's valid.
 * A partitioned partition gets its own index ON ONLY the same way, its
 * partitions' attached to it before it is attached to its parent's. Each
 * partition's index gets the name Postgres would give it (an offline
 * CREATE INDEX on the parent names it after the partition and the index's
 * columns), so that the schema ends as it would offline. A name an earlier
 * drop_index frees (DROP INDEX x; CREATE INDEX x, or another index over
 * the same columns: the dropped one's partitions' names are free offline)
 * is still taken at expand, since the drop runs after the contract: the
 * index is built under a temporary name and renamed after that drop.
 *
 * A foreign key, which Postgres will not add NOT VALID to a partitioned
 * table, is added NOT VALID to each leaf partition under its name and
 * validated there (SHARE UPDATE EXCLUSIVE: writes go on); the table's own
 * ADD FOREIGN KEY then finds each partition's validated key and attaches
 * it (tryAttachPartitionForeignKey), a catalog change without a scan, as
 * offline each partition's key would have the same name. Under a
 * temporary name (the old key of that name is dropped at the contract),
 * the partitions' keys are renamed with the table's there.
 *
 * What Postgres refuses on a partitioned table, or what cannot be done
 * there online, is refused here before any DDL: a change of the type of a
 * partition key column (or its drop), a unique index without the
 * partition key, a UNIQUE constraint over an existing index, an index or
 * foreign key carried to a second column, a foreign key between second
 * columns. */
#include "migration_plan.h"
#include "plan_ctx.h"
#include "sql_fragment.h"
#include "ops/op.h"

#include <stdlib.h>
#include <string.h>

#define NAME_BYTES 64   /* Postgres's NAMEDATALEN: names have at most 63 bytes */

struct names {
    char **v;
    size_t n;
    int oom;
};

static void names_add(struct names *t, const char *s)
{
    char **grown = realloc(t->v, (t->n + 1) * sizeof *grown);
    char *copy = strdup(s);
    if (!grown || !copy) {
        free(copy);
        if (grown)
            t->v = grown;
        t->oom = 1;
        return;
    }
    t->v = grown;
    t->v[t->n++] = copy;
}

static int names_has(const struct names *t, const char *s)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->v[i], s) == 0)
            return 1;
    return 0;
}

static void names_free(struct names *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->v[i]);
    free(t->v);
    memset(t, 0, sizeof *t);
}

/* The longest prefix of s of at most n bytes that does not cut a UTF-8
 * character (pg_mbcliplen). */
static size_t clip(const char *s, size_t n)
{
    size_t len = strlen(s);
    if (len <= n)
        return len;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

/* makeObjectName: name1_name2_label in at most 63 bytes, the longer of the
 * two names cut first. */
static void object_name_pg(char *out, size_t n, const char *name1, const char *name2, const char *label)
{
    size_t n1 = strlen(name1), n2 = strlen(name2);
    size_t avail = NAME_BYTES - 1 - (1 + strlen(label) + 1);
    while (n1 + n2 > avail) {
        if (n1 > n2)
            n1--;
        else
            n2--;
    }
    n1 = clip(name1, n1);
    n2 = clip(name2, n2);
    snprintf(out, n, "%.*s_%.*s_%s", (int)n1, name1, (int)n2, name2, label);
}

/* ChooseIndexColumnNames then ChooseIndexNameAddition: the index's column
 * names ("expr" for an expression), made distinct with a number, joined by
 * "_" until the result is NAMEDATALEN long. */
static void name_addition(char *out, size_t n, char *const *cols, size_t ncols)
{
    char seen[32][NAME_BYTES];
    size_t nseen = 0, len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < ncols && nseen < 32; i++) {
        const char *orig = cols[i] ? cols[i] : "expr";
        char cur[NAME_BYTES];
        snprintf(cur, sizeof cur, "%s", orig);
        for (int k = 1;; k++) {
            int clash = 0;
            for (size_t j = 0; j < nseen && !clash; j++)
                clash = strcmp(seen[j], cur) == 0;
            if (!clash)
                break;
            char num[16];
            snprintf(num, sizeof num, "%d", k);
            snprintf(cur, sizeof cur, "%.*s%s", (int)clip(orig, NAME_BYTES - 1 - strlen(num)), orig, num);
        }
        snprintf(seen[nseen++], NAME_BYTES, "%s", cur);
        if (len > 0 && len + 1 < n)
            out[len++] = '_';
        snprintf(out + len, n - len, "%s", cur);
        len += strlen(out + len);
        if (len >= NAME_BYTES)
            break;
    }
}

/* ChooseRelationName with the label "idx": idx, idx1, idx2 ... until the
 * name is free in the partition's schema, where freed names (a partition
 * index an earlier drop_index drops) are free, as offline. */
static void choose_index_name(char *out, size_t n, const struct mig_cat_partition *p, const char *addition,
                              const struct names *taken, const struct names *freed)
{
    char label[16] = "idx";
    for (int pass = 1;; pass++) {
        object_name_pg(out, n, p->name, addition, label);
        int clash = names_has(taken, out);
        for (size_t i = 0; i < p->ntaken && !clash; i++)
            clash = strcmp(p->taken[i], out) == 0 && !names_has(freed, out);
        if (!clash)
            return;
        snprintf(label, sizeof label, "idx%d", pass);
    }
}

const struct mig_cat_table *partitioned_table(const struct plan_ctx *c, const char *schema, const char *table)
{
    const struct mig_cat_table *t = c->cat ? table_of(c, schema, table) : NULL;
    return t && t->exists && t->relkind == 'p' && t->nparts > 0 ? t : NULL;
}

/* The names Postgres gives op's index columns: a column's name, or NULL
 * for an expression; INCLUDE columns count. Free with names_free. */
static int index_column_names(const struct mig_op *op, struct names *cols, char ***v)
{
    *v = NULL;
    size_t total = op->ncolumns + op->nkeys + op->ninclude;
    char **out = calloc(total ? total : 1, sizeof *out);
    if (!out)
        return -1;
    for (size_t i = 0; i < op->ncolumns; i++)
        out[i] = op->columns[i];
    for (size_t i = 0; i < op->nkeys; i++) {
        char *col = NULL;
        if (sql_fragment_index_key_column(op->keys[i], &col) == SQL_FRAGMENT_OOM)
            cols->oom = 1;
        size_t before = cols->n;
        if (col)
            names_add(cols, col);
        if (cols->n > before)
            out[op->ncolumns + i] = cols->v[before];
        free(col);
    }
    for (size_t i = 0; i < op->ninclude; i++)
        out[op->ncolumns + op->nkeys + i] = op->include[i];
    *v = out;
    return cols->oom ? -1 : 0;
}

/* The partitions' indexes attached, at any depth, to one of the table's
 * indexes named in roots, into out: what dropping those drops. */
static void attached_under(const struct mig_cat_table *t, const struct names *roots, struct names *out)
{
    struct names under = {0};
    for (size_t i = 0; i < roots->n; i++)
        names_add(&under, roots->v[i]);
    /* a partition's parent comes before it in t->parts */
    for (size_t k = 1; k < t->nparts; k++) {
        const struct mig_cat_partition *p = &t->parts[k];
        for (size_t j = 0; j < p->nattached; j++) {
            if (!names_has(&under, p->attached_to[j]))
                continue;
            names_add(&under, p->attached[j]);
            names_add(out, p->attached[j]);
        }
    }
    out->oom |= under.oom || roots->oom;
    names_free(&under);
}

/* The partitions' indexes the drop_index operations before op drop (after
 * the contract). Offline their names are free by op; online they are
 * there until then. */
static void freed_partition_indexes(const struct plan_ctx *c, const struct mig_op *op,
                                    const struct mig_cat_table *t, struct names *freed)
{
    struct names dropped = {0};
    for (size_t i = 0; i < (size_t)op->index && i < c->m->nops; i++) {
        const struct mig_op *o = &c->m->ops[i];
        if (o->kind == MIG_DROP_INDEX && o->name && !strcmp(o->schema, op->schema))
            names_add(&dropped, o->name);
    }
    attached_under(t, &dropped, freed);
    names_free(&dropped);
}

/* The names of op's partitions' indexes, by position in t->parts (the
 * table's own, at 0, is op->name), after those of the create_index
 * operations before it on the same table, in the order Postgres would
 * choose them: each partition's before its own partitions'. In *freed,
 * the names an earlier drop_index frees for op. */
static int partition_index_names(const struct plan_ctx *c, const struct mig_op *op,
                                 const struct mig_cat_table *t, struct names *out, struct names *freed)
{
    struct names taken = {0};
    for (size_t i = 0; i <= (size_t)op->index && i < c->m->nops; i++) {
        const struct mig_op *o = &c->m->ops[i];
        if (o->kind != MIG_CREATE_INDEX || strcmp(o->schema, op->schema) || strcmp(o->table, op->table))
            continue;
        names_free(freed);
        freed_partition_indexes(c, o, t, freed);
        struct names cols = {0};
        char **v = NULL, addition[2 * NAME_BYTES];
        if (index_column_names(o, &cols, &v) != 0)
            taken.oom = 1;
        name_addition(addition, sizeof addition, v, v ? o->ncolumns + o->nkeys + o->ninclude : 0);
        free(v);
        names_free(&cols);
        names_add(&taken, o->name);
        if (o == op) {
            names_free(out);
            names_add(out, o->name);
        }
        for (size_t k = 1; k < t->nparts; k++) {
            char name[NAME_BYTES];
            choose_index_name(name, sizeof name, &t->parts[k], addition, &taken, freed);
            names_add(&taken, name);
            if (o == op)
                names_add(out, name);
        }
    }
    int oom = taken.oom || out->oom || freed->oom || out->n != t->nparts;
    names_free(&taken);
    return oom ? -1 : 0;
}

static char *create_sql(const struct mig_cat_partition *p, const char *name, int unique, int only,
                        const char *definition)
{
    struct mig_str s = {0};
    mig_str_addf(&s, "CREATE %sINDEX %s", unique ? "UNIQUE " : "", only ? "" : "CONCURRENTLY ");
    mig_str_ident(&s, name);
    mig_str_addf(&s, " ON %s", only ? "ONLY " : "");
    mig_str_qname(&s, p->schema, p->name);
    mig_str_addf(&s, " %s", definition);
    return mig_str_take(&s);
}

static char *attach_sql(const struct mig_cat_partition *parent, const char *parent_ix,
                        const struct mig_cat_partition *p, const char *ix)
{
    struct mig_str s = {0};
    mig_str_add(&s, "ALTER INDEX ");
    mig_str_qname(&s, parent->schema, parent_ix);
    mig_str_add(&s, " ATTACH PARTITION ");
    mig_str_qname(&s, p->schema, ix);
    return mig_str_take(&s);
}

static char *drop_sql(const struct mig_cat_partition *p, const char *ix, int concurrently)
{
    struct mig_str s = {0};
    mig_str_addf(&s, "DROP INDEX %sIF EXISTS ", concurrently ? "CONCURRENTLY " : "");
    mig_str_qname(&s, p->schema, ix);
    return mig_str_take(&s);
}

/* Partition k's index, then (a partitioned partition) its partitions',
 * attached to it, then its own attached to its parent's; each under its
 * name in ix (the one it is built under). */
static void build_partition(struct plan_ctx *c, const struct mig_op *op, const struct mig_cat_table *t,
                            const struct names *ix, size_t k, int unique, const char *definition)
{
    if (!ix->v || k >= ix->n)
        return;   /* partition_index_names gave every partition a name */
    const struct mig_cat_partition *p = &t->parts[k];
    struct mig_steps *l = &c->p->expand;
    if (p->relkind == 'p') {
        mig_steps_add(l, op->index, MIG_STEP_TXN, create_sql(p, ix->v[k], unique, 1, definition));
        for (size_t j = k + 1; j < t->nparts; j++)
            if (t->parts[j].parent == (int)k)
                build_partition(c, op, t, ix, j, unique, definition);
    } else {
        mig_steps_add(l, op->index, MIG_STEP_ALONE, create_sql(p, ix->v[k], unique, 0, definition));
        mig_steps_set_cleanup(l, drop_sql(p, ix->v[k], 1));
    }
    if (k > 0) {
        int up = p->parent < 0 ? 0 : p->parent;
        mig_steps_add(l, op->index, MIG_STEP_TXN, attach_sql(&t->parts[up], ix->v[up], p, ix->v[k]));
    }
}

int build_partitioned_index(struct plan_ctx *c, const struct mig_op *op, const struct mig_cat_table *t,
                            int unique, const char *definition, const char *built_as)
{
    struct names final = {0}, freed = {0}, ix = {0};
    if (partition_index_names(c, op, t, &final, &freed) != 0) {
        names_free(&final);
        names_free(&freed);
        return op_error(c, op, "out of memory");
    }
    /* a name an index an earlier drop_index drops still has at expand:
     * built under a temporary one, renamed after that drop (post) */
    for (size_t k = 0; k < t->nparts; k++) {
        char tmp[NAME_BYTES];
        if (k == 0)
            snprintf(tmp, sizeof tmp, "%s", built_as);
        else if (names_has(&freed, final.v[k]))
            object_name(tmp, sizeof tmp, "ix", op, (int)k, c->m->name);
        names_add(&ix, k == 0 || names_has(&freed, final.v[k]) ? tmp : final.v[k]);
    }
    names_free(&freed);
    if (ix.oom || ix.n != t->nparts) {
        names_free(&final);
        names_free(&ix);
        return op_error(c, op, "out of memory");
    }
    build_partition(c, op, t, &ix, 0, unique, definition);
    for (size_t k = 0; k < t->nparts; k++)
        if (strcmp(ix.v[k], final.v[k]) != 0)
            mig_steps_add(&c->p->post, op->index, MIG_STEP_TXN, rename_index_sql(t->parts[k].schema, ix.v[k], final.v[k]));
    /* The parent's drops every index attached to it, at any depth (a
     * catalog change, under ACCESS EXCLUSIVE on the table and each
     * partition); then what a partial expand left unattached. */
    for (size_t k = 0; k < t->nparts; k++)
        mig_steps_add(&c->p->rollback, op->index, t->parts[k].relkind == 'p' ? MIG_STEP_TXN : MIG_STEP_ALONE,
                      drop_sql(&t->parts[k], ix.v[k], t->parts[k].relkind != 'p'));
    for (size_t k = 1; k < t->nparts; k++)
        carried(c, op, "index \"%s\" of partition \"%s\": built CONCURRENTLY, then attached to the "
                "partitioned table's index", final.v[k], t->parts[k].name);
    names_free(&final);
    names_free(&ix);
    return 0;
}

int build_partitioned_foreign_key(struct plan_ctx *c, const struct mig_op *op, const struct mig_cat_table *t,
                                  const char *name, const char *final_name, const char *definition)
{
    struct mig_str s = {0};
    mig_str_addf(&s, "%s NOT VALID", definition);
    char *not_valid = mig_str_take(&s);
    if (!not_valid)
        return op_error(c, op, "out of memory");
    for (size_t k = 1; k < t->nparts; k++) {
        if (t->parts[k].relkind != 'r')
            continue;   /* a partitioned partition's key is made by the table's ADD, its leaves' attached */
        mig_steps_add(&c->p->expand, op->index, MIG_STEP_TXN,
                      alter_table_sql(t->parts[k].schema, t->parts[k].name, "ADD CONSTRAINT", name, not_valid));
        mig_steps_add(&c->p->validate, op->index, MIG_STEP_TXN,
                      alter_table_sql(t->parts[k].schema, t->parts[k].name, "VALIDATE CONSTRAINT", name, ""));
        carried(c, op, "foreign key \"%s\" of partition \"%s\": added NOT VALID and validated, then attached to "
                "the partitioned table's", name, t->parts[k].name);
    }
    free(not_valid);
    mig_steps_add(&c->p->validate, op->index, MIG_STEP_TXN, alter_table_sql(t->parts[0].schema, t->parts[0].name, "ADD CONSTRAINT",
                                                                                name, definition));
    /* the table's RENAME CONSTRAINT leaves its partitions' keys (made or
     * attached under the temporary name) as they are: each renamed too */
    if (strcmp(name, final_name) != 0) {
        struct mig_str to = {0};
        mig_str_add(&to, " TO ");
        mig_str_ident(&to, final_name);
        char *tail = mig_str_take(&to);
        for (size_t k = 1; k < t->nparts; k++)
            if (t->parts[k].relkind == 'r' || t->parts[k].relkind == 'p')
                mig_steps_add(&c->p->contract, op->index, MIG_STEP_TXN,
                              alter_table_sql(t->parts[k].schema, t->parts[k].name, "RENAME CONSTRAINT", name, tail ? tail : ""));
        free(tail);
    }
    /* the table's drops every key attached to it; then what a partial
     * expand left on a leaf */
    for (size_t k = 0; k < t->nparts; k++)
        if (k == 0 || t->parts[k].relkind == 'r')
            mig_steps_add(&c->p->rollback, op->index, MIG_STEP_TXN,
                          alter_table_sql(t->parts[k].schema, t->parts[k].name, "DROP CONSTRAINT IF EXISTS", name, ""));
    return 0;
}

int carry_partitioned_index(struct plan_ctx *c, const struct mig_op *op, const struct mig_cat_table *t,
                            const struct mig_cat_index *ix, const char *name_now, const char *from, const char *to,
                            const char *tmp, int slot)
{
    struct mig_str s = {0};
    index_definition_sql(&s, ix->method, ix->cols, ix->ncols, from, to, NULL);
    char *definition = mig_str_take(&s);
    /* offline ALTER COLUMN ... TYPE rebuilds the table's index under its
     * name and each partition's under the name Postgres chooses anew, the
     * old ones' names free by then (the column has its name again) */
    char addition[2 * NAME_BYTES];
    struct names freed = {0}, taken = {0}, final = {0}, built = {0};
    struct names rebuilt = {0};
    names_add(&rebuilt, ix->name);
    name_addition(addition, sizeof addition, ix->cols, ix->ncols);
    attached_under(t, &rebuilt, &freed);
    names_free(&rebuilt);
    names_add(&final, name_now);
    names_add(&built, tmp);
    for (size_t k = 1; k < t->nparts; k++) {
        char name[NAME_BYTES], temp[NAME_BYTES];
        choose_index_name(name, sizeof name, &t->parts[k], addition, &taken, &freed);
        names_add(&taken, name);
        names_add(&final, name);
        object_name(temp, sizeof temp, "ip", op, slot * 1000 + (int)k, c->m->name);
        names_add(&built, temp);
    }
    int oom = !definition || freed.oom || taken.oom || final.oom || built.oom || final.n != t->nparts ||
              built.n != t->nparts;
    if (!oom) {
        build_partition(c, op, t, &built, 0, ix->unique, definition);
        /* at contract, after the original column and its indexes are gone */
        for (size_t k = 0; k < t->nparts; k++)
            mig_steps_add(&c->p->contract, op->index, MIG_STEP_TXN, rename_index_sql(t->parts[k].schema, built.v[k], final.v[k]));
        for (size_t k = 1; k < t->nparts; k++)
            carried(c, op, "index \"%s\" of partition \"%s\": built CONCURRENTLY on the second column, attached, "
                    "renamed at contract as Postgres names it rebuilt", final.v[k], t->parts[k].name);
    }
    free(definition);
    names_free(&freed);
    names_free(&taken);
    names_free(&final);
    names_free(&built);
    return oom ? op_error(c, op, "out of memory") : 0;
}

static int in_partition_key(const struct mig_cat_table *t, const char *col)
{
    for (size_t i = 0; t && i < t->npartkey; i++)
        if (strcmp(t->partkey[i], col) == 0)
            return 1;
    return 0;
}

/* Postgres's rule for a unique index of a partitioned table: it includes
 * every partitioning column (of the table and of its partitioned
 * partitions) as a plain key column, and no key is an expression. */
static int refuse_unique_index(struct plan_ctx *c, const struct mig_op *op, const struct mig_cat_table *t)
{
    struct names cols = {0};
    char **v = NULL;
    int rc = index_column_names(op, &cols, &v);
    for (size_t i = 0; rc == 0 && i < t->npartkey; i++) {
        int found = 0;
        for (size_t k = 0; k < op->ncolumns + op->nkeys && !found; k++)
            found = v[k] && strcmp(v[k], t->partkey[i]) == 0;
        if (t->partkey_exprs || !found)
            rc = op_error(c, op, "unique index \"%s\" on partitioned table \"%s.%s\" does not include its "
                          "partition key column \"%s\" as a key column%s, and Postgres refuses it (a unique "
                          "constraint on a partitioned table must include all partitioning columns): add the "
                          "column to the index's keys, or leave out \"unique\"", op->name, op->schema,
                          op->table, t->partkey[i], t->partkey_exprs ? " (its partition key has an "
                          "expression, which no unique index can include)" : "");
    }
    free(v);
    names_free(&cols);
    return rc;
}

static int refuse_foreign_partitions(struct plan_ctx *c, const struct mig_op *op, const struct mig_cat_table *t)
{
    for (size_t k = 1; k < t->nparts; k++)
        if (t->parts[k].relkind == 'f')
            return op_error(c, op, "partitioned table \"%s.%s\" has the foreign table \"%s.%s\" as a partition, "
                            "which cannot be indexed; create index \"%s\" once it is detached, or in an \"sql\" "
                            "operation", op->schema, op->table, t->parts[k].schema, t->parts[k].name, op->name);
    return 0;
}

static int refuse_key_column(struct plan_ctx *c, const struct mig_op *op, const struct mig_cat_table *t,
                             const char *col, const char *change, const char *pg_says)
{
    if (!in_partition_key(t, col))
        return 0;
    return op_error(c, op, "column \"%s\" of table \"%s.%s\" is in the table's partition key (or a partition's), "
                    "and Postgres refuses to %s it (cannot %s column \"%s\" because it is part of the partition "
                    "key of relation \"%s\"); renaming it alone is fine. To change it, create a new partitioned "
                    "table partitioned on the new column and move the rows", col, op->schema, op->table, change,
                    pg_says, col, op->table);
}

/* The column's foreign keys are carried to a second column by ADD FOREIGN
 * KEY ... NOT VALID, which Postgres does not take on a partitioned table;
 * its indexes by CREATE INDEX CONCURRENTLY, which it does not take either:
 * one plain index (columns only, backing no constraint) is built as a new
 * partitioned index is (carry_partitioned_index), others are refused. */
static int refuse_carried(struct plan_ctx *c, const struct mig_op *op, const struct mig_cat_table *t,
                          const char *col)
{
    size_t indexes = 0;
    for (size_t i = 0; i < t->ndeps; i++) {
        const struct mig_cat_dep *d = &t->deps[i];
        indexes += !strcmp(d->column, col) && !d->foreign && d->kind == MIG_DEP_INDEX;
    }
    for (size_t i = 0; i < t->ndeps; i++) {
        const struct mig_cat_dep *d = &t->deps[i];
        if (strcmp(d->column, col) || d->foreign || (d->kind != MIG_DEP_INDEX && !(d->kind == MIG_DEP_CONSTRAINT &&
                                                     d->contype == 'f')))
            continue;
        const struct mig_cat_index *ix = d->kind == MIG_DEP_INDEX ? mig_catalog_index(t, d->name) : NULL;
        if (ix && ix->simple && !ix->constraint && indexes == 1)
            continue;
        return op_error(c, op, "column \"%s\" of partitioned table \"%s.%s\" has %s, which a change of its type "
                        "or values carries to a second column (%s), and Postgres does not take that on a "
                        "partitioned table; drop it in an earlier migration and create it again after this one",
                        col, op->schema, op->table, d->describe, d->kind == MIG_DEP_INDEX ?
                        "an index built CONCURRENTLY: cannot create index on partitioned table concurrently; "
                        "one plain index of the column alone is carried" :
                        "a foreign key added NOT VALID: cannot add NOT VALID foreign key on partitioned table");
    }
    return 0;
}

static int refuse_add_column(struct plan_ctx *c, const struct mig_op *op)
{
    if (op->col.references)
        return op_error(c, op, "column \"%s\" of partitioned table \"%s.%s\" references %s, and Postgres cannot "
                        "add a foreign key NOT VALID on a partitioned table (cannot add NOT VALID foreign key on "
                        "partitioned table), which add_column needs to add it without a scan under lock; add the "
                        "column without \"references\" and its foreign key with a create_constraint after it "
                        "(each partition's added NOT VALID and validated, then attached to the table's)",
                        op->col.name, op->schema, op->table,
                        op->col.references);
    if (op->col.unique == 1 || op->col.primary_key == 1)
        return op_error(c, op, "column \"%s\" of partitioned table \"%s.%s\" is %s, and on a partitioned table a "
                        "unique constraint must include all partitioning columns and cannot be added over an "
                        "index built beforehand (ALTER TABLE ... ADD CONSTRAINT ... USING INDEX is not supported "
                        "on partitioned tables); add the column, then a create_index with \"unique\" over it and "
                        "the partition key", op->col.name, op->schema, op->table,
                        op->col.unique == 1 ? "unique" : "a primary key");
    return 0;
}

static int refuse_constraint(struct plan_ctx *c, const struct mig_op *op)
{
    /* a primary key is refused by its own operation, which says how to add
     * one; a foreign key is each partition's, attached
     * (build_partitioned_foreign_key) */
    if (!op->constraint_type || strcmp(op->constraint_type, "unique") != 0)
        return 0;
    return op_error(c, op, "%s%s%son partitioned table \"%s.%s\": Postgres cannot add a unique constraint over an "
                    "index built beforehand on a partitioned table (ALTER TABLE ... ADD CONSTRAINT ... USING INDEX "
                    "is not supported on partitioned tables), which create_constraint needs to add it online; "
                    "create it in an \"sql\" operation, or a create_index with \"unique\" over the partition key "
                    "and the columns", op->name ? "constraint \"" : "the constraint ", op->name ? op->name : "",
                    op->name ? "\" " : "", op->schema, op->table);
}

static int refuse_alter_column(struct plan_ctx *c, const struct mig_op *op, const struct mig_cat_table *t)
{
    const char *now = column_type(c, op->schema, op->table, op->column);
    int retype = op->type && !(now && strcmp(now, op->type) == 0);
    if ((retype || !alter_in_place(c, op)) &&
        refuse_key_column(c, op, t, op->column, "change the type of", "alter"))
        return -1;
    if (op->unique == 1)
        return op_error(c, op, "column \"%s\" of partitioned table \"%s.%s\" cannot be made unique by "
                        "alter_column: Postgres needs a partitioned table's unique index to include all its "
                        "partitioning columns; use a create_index with \"unique\" over the column and the "
                        "partition key", op->column, op->schema, op->table);
    return alter_in_place(c, op) ? 0 : refuse_carried(c, op, t, op->column);
}

int refuse_on_partitioned(struct plan_ctx *c, const struct mig_op *op)
{
    const struct mig_cat_table *t = op->table ? partitioned_table(c, op->schema, op->table) : NULL;
    if (!t)
        return 0;
    switch (op->kind) {
    case MIG_CREATE_INDEX:
        if (refuse_foreign_partitions(c, op, t))
            return -1;
        return op->unique == 1 ? refuse_unique_index(c, op, t) : 0;
    case MIG_ALTER_COLUMN:
        return refuse_alter_column(c, op, t);
    case MIG_RENAME_COLUMN:
        if (rename_keeps_original(c, op)) {
            const char *now = column_type(c, op->schema, op->table, op->from);
            int retype = op->type && !(now && strcmp(now, op->type) == 0);
            return retype ? refuse_key_column(c, op, t, op->from, "change the type of", "alter") : 0;
        }
        if (refuse_key_column(c, op, t, op->from, "change the type or values of", "drop"))
            return -1;
        return refuse_carried(c, op, t, op->from);
    case MIG_DROP_COLUMN:
        return refuse_key_column(c, op, t, op->column, "drop", "drop");
    case MIG_ADD_COLUMN:
        return refuse_add_column(c, op);
    case MIG_CREATE_CONSTRAINT:
        return refuse_constraint(c, op);
    default:
        return 0;
    }
}

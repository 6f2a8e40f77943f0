/* A partitioned table's partitions in the catalog snapshot
 * (migration_catalog.h): each partition at every depth, the names an index
 * Postgres names for it must avoid, the table's partitioning columns, and
 * each partition's indexes attached to its parent's (which names a drop or
 * a rebuild of the parent's index frees). Read with the table, freed with
 * it. */
#include "migration_catalog.h"

#include <stdlib.h>
#include <string.h>

/* A partitioned table's partitions at every depth, depth first (the table
 * itself first, each partitioned partition before its own), with the
 * names an index Postgres names for each must avoid, and the columns each
 * partitioned one's key names: its partitioning columns are internally
 * dependent on it (pg_depend), plain or in an expression. */
static const char *PARTITIONS_SQL =
    "WITH RECURSIVE tree AS ("
    "  SELECT c.oid, ARRAY[]::name[] AS path, 0::oid AS parent"
    "    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    "   WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind = 'p'"
    "  UNION ALL"
    "  SELECT i.inhrelid, t.path || pc.relname, t.oid"
    "    FROM tree t JOIN pg_inherits i ON i.inhparent = t.oid JOIN pg_class pc ON pc.oid = i.inhrelid)"
    "SELECT n.nspname, c.relname, c.relkind::text, t.parent::text, c.oid::text,"
    "       (SELECT json_agg(o.relname ORDER BY o.relname) FROM pg_class o"
    "         WHERE o.relnamespace = c.relnamespace AND starts_with(o.relname, left(c.relname, 20)))::text,"
    "       (SELECT json_agg(a.attname ORDER BY a.attnum) FROM pg_depend d"
    "          JOIN pg_attribute a ON a.attrelid = d.objid AND a.attnum = d.objsubid"
    "         WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.objsubid > 0"
    "           AND d.refclassid = 'pg_class'::regclass AND d.refobjid = c.oid AND d.refobjsubid = 0"
    "           AND d.deptype = 'i')::text,"
    "       EXISTS (SELECT 1 FROM pg_partitioned_table pt WHERE pt.partrelid = c.oid AND pt.partexprs IS NOT NULL),"
    "       (SELECT json_agg(ic.relname ORDER BY ic.relname) FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid"
    "          JOIN pg_inherits ih ON ih.inhrelid = x.indexrelid WHERE x.indrelid = c.oid)::text,"
    "       (SELECT json_agg(pc.relname ORDER BY ic.relname) FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid"
    "          JOIN pg_inherits ih ON ih.inhrelid = x.indexrelid JOIN pg_class pc ON pc.oid = ih.inhparent"
    "         WHERE x.indrelid = c.oid)::text"
    "  FROM tree t JOIN pg_class c ON c.oid = t.oid JOIN pg_namespace n ON n.oid = c.relnamespace"
    " ORDER BY t.path";

/* Adds the names of names_json not in t->partkey yet. */
static void add_partkey(struct mig_cat_table *t, const char *names_json)
{
    char **names;
    size_t n;
    mig_catalog_json_names(names_json, &names, &n);
    for (size_t i = 0; i < n; i++) {
        int seen = 0;
        for (size_t k = 0; k < t->npartkey && !seen; k++)
            seen = strcmp(t->partkey[k], names[i]) == 0;
        char **grown = seen ? NULL : realloc(t->partkey, (t->npartkey + 1) * sizeof *grown);
        if (grown) {
            t->partkey = grown;
            t->partkey[t->npartkey++] = names[i];
        } else {
            free(names[i]);
        }
    }
    free(names);
}

static void free_names(char **v, size_t n)
{
    for (size_t k = 0; k < n; k++)
        free(v[k]);
    free(v);
}

static void free_partition_indexes(struct mig_cat_partition *p, size_t nparents)
{
    free_names(p->attached, p->nattached);
    free_names(p->attached_to, nparents);
    p->attached = p->attached_to = NULL;
    p->nattached = 0;
}

int mig_catalog_load_partitions(PGconn *conn, struct mig_cat_table *t, char *err, size_t errlen)
{
    if (t->relkind != 'p')
        return 0;
    PGresult *r = mig_catalog_query_table(conn, PARTITIONS_SQL, t, err, errlen);
    if (!r)
        return -1;
    int n = PQntuples(r);
    t->parts = calloc((size_t)n + 1, sizeof *t->parts);
    for (int i = 0; t->parts && i < n; i++) {
        struct mig_cat_partition *p = &t->parts[t->nparts++];
        p->schema = strdup(PQgetvalue(r, i, 0));
        p->name = strdup(PQgetvalue(r, i, 1));
        p->relkind = PQgetvalue(r, i, 2)[0];
        p->parent = -1;
        for (int k = 0; k < i; k++)
            if (strcmp(PQgetvalue(r, k, 4), PQgetvalue(r, i, 3)) == 0)
                p->parent = k;
        mig_catalog_json_names(PQgetisnull(r, i, 5) ? NULL : PQgetvalue(r, i, 5), &p->taken, &p->ntaken);
        add_partkey(t, PQgetisnull(r, i, 6) ? NULL : PQgetvalue(r, i, 6));
        t->partkey_exprs |= PQgetvalue(r, i, 7)[0] == 't';
        size_t nparents = 0;
        mig_catalog_json_names(PQgetisnull(r, i, 8) ? NULL : PQgetvalue(r, i, 8), &p->attached, &p->nattached);
        mig_catalog_json_names(PQgetisnull(r, i, 9) ? NULL : PQgetvalue(r, i, 9), &p->attached_to, &nparents);
        if (nparents != p->nattached)   /* out of memory in one of them: neither */
            free_partition_indexes(p, nparents);
    }
    PQclear(r);
    return 0;
}

void mig_catalog_free_partitions(struct mig_cat_table *t)
{
    for (size_t i = 0; i < t->nparts; i++) {
        free(t->parts[i].schema); free(t->parts[i].name);
        free_names(t->parts[i].taken, t->parts[i].ntaken);
        free_partition_indexes(&t->parts[i], t->parts[i].nattached);
    }
    free(t->parts);
    for (size_t i = 0; i < t->npartkey; i++)
        free(t->partkey[i]);
    free(t->partkey);
}

/* Reads the live catalog (columns, primary key, indexes, foreign keys) of the
 * tables a migration names, and the indexes its drop_index operations name,
 * so that validation and SQL generation can work from a snapshot. Every
 * query takes names as parameters. */
#include "migration_catalog.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migration_sql.h"

static const char *COLUMNS_SQL =
    "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,"
    "       pg_get_expr(d.adbin, d.adrelid), col_description(c.oid, a.attnum), a.attstattarget,"
    "       (SELECT json_agg(x.privilege_type || chr(9) ||"
    "               CASE WHEN x.grantee = 0 THEN '' ELSE pg_get_userbyid(x.grantee) END || chr(9) ||"
    "               CASE WHEN x.is_grantable THEN 't' ELSE 'f' END ORDER BY 1)"
    "          FROM aclexplode(a.attacl) x)::text, a.attidentity::text, a.attgenerated::text,"
    "       sq.seqrelid::regclass::text, format_type(sq.seqtypid, NULL),"
    "       'START WITH ' || sq.seqstart || ' INCREMENT BY ' || sq.seqincrement"
    "       || CASE WHEN sq.seqmin = 1 THEN '' ELSE ' MINVALUE ' || sq.seqmin END"
    "       || CASE WHEN sq.seqmax IN (32767, 2147483647, 9223372036854775807) THEN ''"
    "               ELSE ' MAXVALUE ' || sq.seqmax END"
    "       || ' CACHE ' || sq.seqcache || CASE WHEN sq.seqcycle THEN ' CYCLE' ELSE '' END,"
    "       sq.seqincrement < 0"
    "  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    "  JOIN pg_attribute a ON a.attrelid = c.oid"
    "  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
    "  LEFT JOIN pg_sequence sq ON sq.seqrelid = pg_get_serial_sequence("
    "       quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname)::regclass"
    " WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r','p')"
    "   AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum";

/* Simple (no expression, no predicate) indexes come back with their column
 * names as JSON so they can be rebuilt on a renamed column. */
static const char *INDEXES_SQL =
    "SELECT ic.relname, am.amname, i.indisunique, i.indisprimary,"
    "       (i.indexprs IS NULL AND i.indpred IS NULL AND i.indisvalid AND i.indnkeyatts = i.indnatts"
    "        AND NOT EXISTS (SELECT 1 FROM unnest(i.indoption) o WHERE o <> 0)"
    "        AND NOT EXISTS (SELECT 1 FROM unnest(i.indclass) k JOIN pg_opclass oc ON oc.oid = k"
    "                         WHERE NOT oc.opcdefault)"
    "        AND NOT EXISTS (SELECT 1 FROM unnest(i.indcollation) k WHERE k <> 0 AND k NOT IN"
    "                         (SELECT attcollation FROM pg_attribute WHERE attrelid = i.indrelid))),"
    "       (SELECT json_agg(a.attname ORDER BY k.o) FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o)"
    "          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n)::text,"
    "       con.conname,"
    "       (SELECT bool_and(a.attnotnull) FROM pg_attribute a"
    "         WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey))"
    "  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    "  JOIN pg_index i ON i.indrelid = c.oid JOIN pg_class ic ON ic.oid = i.indexrelid"
    "  JOIN pg_am am ON am.oid = ic.relam"
    "  LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.contype IN ('u','p')"
    " WHERE n.nspname = $1 AND c.relname = $2"
    " ORDER BY i.indisprimary DESC, ic.relname";

static const char *FKEYS_SQL =
    "SELECT con.conname, a.attname, con.confrelid::regclass::text, ra.attname,"
    "       con.confdeltype, con.confupdtype"
    "  FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid"
    "  JOIN pg_namespace n ON n.oid = c.relnamespace"
    "  JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1]"
    "  JOIN pg_attribute ra ON ra.attrelid = con.confrelid AND ra.attnum = con.confkey[1]"
    " WHERE con.contype = 'f' AND n.nspname = $1 AND c.relname = $2"
    "   AND array_length(con.conkey, 1) = 1";

static const char *INCOMING_FKEYS_SQL =
    "SELECT con.conname, ra.attname, con.conrelid::regclass::text, a.attname,"
    "       con.confdeltype, con.confupdtype"
    "  FROM pg_constraint con JOIN pg_class c ON c.oid = con.confrelid"
    "  JOIN pg_namespace n ON n.oid = c.relnamespace"
    "  JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1]"
    "  JOIN pg_attribute ra ON ra.attrelid = con.confrelid AND ra.attnum = con.confkey[1]"
    " WHERE con.contype = 'f' AND n.nspname = $1 AND c.relname = $2"
    "   AND array_length(con.conkey, 1) = 1";

/* Everything that depends on a column of the table, the column's own
 * default aside: views (through their rewrite rule), indexes, constraints
 * (of this table, or foreign keys of others), triggers, policies, extended
 * statistics, owned sequences, generated columns (another column's "default"
 * that reads this one can only be a generation expression).
 *
 * One row per column and object: pg_depend lists an object once per
 * dependency (a CHECK on two columns depends on each automatically through
 * its key and normally through its expression, a partial index twice on its
 * column), and a view once per rewrite rule. An object that depends on the
 * column automatically at all goes with it at DROP COLUMN, so 'a' is kept
 * over 'n'. The shape views of the migrations in flight (pgtandem_*
 * schemas) are not the user's: a migration built on one plans past its
 * views, which that migration's complete drops before this one's. */
static const char *DEPENDENTS_SQL =
    "WITH dep AS ("
    "SELECT a.attname,"
    "       CASE WHEN r.oid IS NOT NULL THEN 'v' WHEN ic.relkind IN ('i','I') THEN 'i'"
    "            WHEN con.oid IS NOT NULL THEN 'c' ELSE 'o' END AS kind,"
    "       coalesce(r.ev_class::regclass::text, ic.relname::text, con.conname::text, '') AS name,"
    "       CASE WHEN r.oid IS NOT NULL THEN"
    "            (CASE rv.relkind WHEN 'm' THEN 'materialized view ' ELSE 'view ' END) || r.ev_class::regclass::text"
    "            WHEN ad.oid IS NOT NULL THEN"
    "            replace(pg_describe_object(d.classid, d.objid, d.objsubid), 'default value for', 'generated')"
    "            ELSE pg_describe_object(d.classid, d.objid, d.objsubid) END AS describe,"
    "       coalesce(con.contype::text, '') AS contype,"
    "       coalesce(con.conrelid <> d.refobjid, false) AS foreign_, d.deptype,"
    "       CASE WHEN r.oid IS NOT NULL THEN 'pg_class'::regclass ELSE d.classid END AS objclass,"
    "       coalesce(r.ev_class, d.objid) AS objid,"
    "       CASE WHEN r.oid IS NOT NULL THEN 0 ELSE d.objsubid END AS objsubid,"
    "       coalesce(con.convalidated, true) AS validated"
    "  FROM pg_depend d"
    "  JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid"
    "  LEFT JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid"
    "  LEFT JOIN pg_class rv ON rv.oid = r.ev_class"
    "  LEFT JOIN pg_class ic ON d.classid = 'pg_class'::regclass AND ic.oid = d.objid"
    "  LEFT JOIN pg_constraint con ON d.classid = 'pg_constraint'::regclass AND con.oid = d.objid"
    "  LEFT JOIN pg_attrdef ad ON d.classid = 'pg_attrdef'::regclass AND ad.oid = d.objid"
    " WHERE d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0"
    "   AND d.refobjid = (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    "                      WHERE n.nspname = $1 AND c.relname = $2)"
    "   AND d.deptype IN ('n', 'a')"
    "   AND NOT (ad.oid IS NOT NULL AND ad.adrelid = d.refobjid AND ad.adnum = d.refobjsubid)"
    "   AND NOT (r.oid IS NOT NULL AND r.ev_class = d.refobjid)"
    "   AND NOT (r.oid IS NOT NULL AND rv.relnamespace IN"
    "            (SELECT oid FROM pg_namespace WHERE nspname LIKE 'pgtandem\\_%'))),"
    " one AS (SELECT DISTINCT ON (attname, objclass, objid, objsubid) * FROM dep"
    "          ORDER BY attname, objclass, objid, objsubid, deptype)"
    "SELECT attname, kind, name, describe, contype, foreign_, deptype, objid::text, validated"
    "  FROM one ORDER BY 1, 2, 3, 4";

/* The foreign keys of other tables that reference this one, whatever
 * their number of columns: DROP TABLE refuses while one exists (2BP01).
 * Its own (self-referencing) keys go with it. A partition of a referencing
 * partitioned table repeats its parent's key (same referenced table): the
 * parent's is the one named. A key referencing a partitioned table has one
 * more per partition, on the same table: a partition's is named by the
 * key it derives from, as Postgres names it (and as it can be dropped). */
static const char *REFERENCED_BY_SQL =
    "SELECT (WITH RECURSIVE up AS (SELECT con.conparentid AS parent, con.conname, 0 AS depth"
    "         UNION ALL SELECT p.conparentid, p.conname, up.depth + 1 FROM up"
    "          JOIN pg_constraint p ON p.oid = up.parent AND p.conrelid = con.conrelid)"
    "        SELECT conname FROM up ORDER BY depth DESC LIMIT 1),"
    "       rn.nspname, rc.relname,"
    "       (SELECT json_agg(a.attname ORDER BY k.o) FROM unnest(con.conkey) WITH ORDINALITY k(n, o)"
    "          JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n)::text"
    "  FROM pg_constraint con JOIN pg_class rc ON rc.oid = con.conrelid"
    "  JOIN pg_namespace rn ON rn.oid = rc.relnamespace"
    " WHERE con.contype = 'f' AND con.conrelid <> con.confrelid"
    "   AND con.confrelid = (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    "                         WHERE n.nspname = $1 AND c.relname = $2)"
    "   AND NOT EXISTS (SELECT 1 FROM pg_constraint p WHERE p.oid = con.conparentid"
    "                    AND p.confrelid = con.confrelid)"
    " ORDER BY 2, 3, 1";

/* The table's own row: its row estimate and its kind. */
/* With the rank its tandem triggers will take (the highest rank of those
 * on it plus one, 0 when none is: plan_trigger.c names them by it). */
static const char *CLASS_SQL =
    "SELECT greatest(c.reltuples, 0)::float8, c.relkind::text,"
    "  (SELECT coalesce(max(CASE WHEN substr(g.tgname, 12, 1) BETWEEN 'a' AND 'z'"
    "                           THEN ascii(substr(g.tgname, 12, 1)) - 96 ELSE 0 END), -1) + 1"
    "     FROM pg_trigger g WHERE g.tgrelid = c.oid AND g.tgname LIKE 'pgtandem\\_tg%'"
    "  )::int FROM pg_class c"
    "  JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2";

/* An index by schema and name: its kind, its table, the constraint it backs
 * (the constraint's own table: a foreign key of another table names the
 * index it looks rows up through too), the partitioned table's index it is
 * attached to, and the foreign keys that look rows up through it (each
 * once, not once per partition of a partitioned referencing table). */
static const char *NAMED_INDEX_SQL =
    "SELECT ic.relkind::text, i.indrelid::regclass::text, con.conname, con.contype::text,"
    "       (SELECT inh.inhparent::regclass::text FROM pg_inherits inh WHERE inh.inhrelid = ic.oid LIMIT 1),"
    "       (SELECT json_agg(json_build_array(f.conname, fn.nspname, fc.relname,"
    "               (SELECT json_agg(a.attname ORDER BY k.o) FROM unnest(f.conkey) WITH ORDINALITY k(n, o)"
    "                  JOIN pg_attribute a ON a.attrelid = f.conrelid AND a.attnum = k.n))"
    "               ORDER BY fn.nspname, fc.relname, f.conname)"
    "          FROM pg_constraint f JOIN pg_class fc ON fc.oid = f.conrelid"
    "          JOIN pg_namespace fn ON fn.oid = fc.relnamespace"
    "         WHERE f.contype = 'f' AND f.conindid = ic.oid"
    "           AND NOT EXISTS (SELECT 1 FROM pg_constraint p WHERE p.oid = f.conparentid"
    "                            AND p.conindid = f.conindid))::text"
    "  FROM pg_class ic JOIN pg_namespace n ON n.oid = ic.relnamespace"
    "  JOIN pg_index i ON i.indexrelid = ic.oid"
    "  LEFT JOIN pg_constraint con ON con.conindid = ic.oid AND con.conrelid = i.indrelid"
    "        AND con.contype IN ('p', 'u', 'x')"
    " WHERE n.nspname = $1 AND ic.relname = $2 AND ic.relkind IN ('i', 'I')";

static char *dup_or_null(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : strdup(PQgetvalue(r, row, col));
}

static PGresult *query_named(PGconn *conn, const char *sql, const char *schema, const char *name,
                             char *err, size_t errlen)
{
    const char *params[2] = {schema, name};
    PGresult *r = PQexecParams(conn, sql, 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "reading the catalog of %s.%s: %s", schema, name, PQerrorMessage(conn));
        PQclear(r);
        return NULL;
    }
    return r;
}

PGresult *mig_catalog_query_table(PGconn *conn, const char *sql, const struct mig_cat_table *t,
                                  char *err, size_t errlen)
{
    return query_named(conn, sql, t->schema, t->name, err, errlen);
}

void mig_catalog_json_names(const char *text, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    json_t *arr = text ? json_loads(text, 0, NULL) : NULL;
    size_t len = json_array_size(arr);
    if (len > 0 && (*out = calloc(len, sizeof(char *))) != NULL) {
        for (size_t i = 0; i < len; i++) {
            const char *s = json_string_value(json_array_get(arr, i));
            (*out)[(*n)++] = strdup(s ? s : "");
        }
    }
    json_decref(arr);
}

static int load_columns(PGconn *conn, struct mig_cat_table *t, char *err, size_t errlen)
{
    PGresult *r = mig_catalog_query_table(conn, COLUMNS_SQL, t, err, errlen);
    if (!r)
        return -1;
    int n = PQntuples(r);
    t->exists = n > 0;
    t->cols = calloc((size_t)n + 1, sizeof *t->cols);
    for (int i = 0; t->cols && i < n; i++) {
        struct mig_cat_column *c = &t->cols[t->ncols++];
        c->name = strdup(PQgetvalue(r, i, 0));
        c->type = strdup(PQgetvalue(r, i, 1));
        c->notnull = PQgetvalue(r, i, 2)[0] == 't';
        c->default_expr = dup_or_null(r, i, 3);
        c->comment = dup_or_null(r, i, 4);
        c->stattarget = atoi(PQgetvalue(r, i, 5));
        mig_catalog_json_names(PQgetisnull(r, i, 6) ? NULL : PQgetvalue(r, i, 6), &c->grants, &c->ngrants);
        c->identity = PQgetvalue(r, i, 7)[0];
        c->generated = PQgetvalue(r, i, 8)[0];
        c->sequence = dup_or_null(r, i, 9);
        c->sequence_type = dup_or_null(r, i, 10);
        c->sequence_options = dup_or_null(r, i, 11);
        c->sequence_descending = PQgetvalue(r, i, 12)[0] == 't';
    }
    PQclear(r);
    return 0;
}

static enum mig_dep_kind dep_kind(char k)
{
    switch (k) {
    case 'v': return MIG_DEP_VIEW;
    case 'i': return MIG_DEP_INDEX;
    case 'c': return MIG_DEP_CONSTRAINT;
    default: return MIG_DEP_OTHER;
    }
}

static int load_dependents(PGconn *conn, struct mig_cat_table *t, char *err, size_t errlen)
{
    PGresult *r = mig_catalog_query_table(conn, DEPENDENTS_SQL, t, err, errlen);
    if (!r)
        return -1;
    int n = PQntuples(r);
    t->deps = calloc((size_t)n + 1, sizeof *t->deps);
    for (int i = 0; t->deps && i < n; i++) {
        struct mig_cat_dep *d = &t->deps[t->ndeps++];
        d->column = strdup(PQgetvalue(r, i, 0));
        d->kind = dep_kind(PQgetvalue(r, i, 1)[0]);
        d->name = strdup(PQgetvalue(r, i, 2));
        d->describe = strdup(PQgetvalue(r, i, 3));
        d->contype = PQgetvalue(r, i, 4)[0];
        d->foreign = PQgetvalue(r, i, 5)[0] == 't';
        d->deptype = PQgetvalue(r, i, 6)[0];
        d->oid = (unsigned int)strtoul(PQgetvalue(r, i, 7), NULL, 10);
        d->validated = PQgetvalue(r, i, 8)[0] == 't';
    }
    PQclear(r);
    return 0;
}

static void take_key(struct mig_cat_table *t, const struct mig_cat_index *ix)
{
    t->npk = ix->ncols;
    t->pk = calloc(ix->ncols, sizeof(char *));
    t->pk_types = calloc(ix->ncols, sizeof(char *));
    for (size_t k = 0; t->pk && t->pk_types && k < ix->ncols; k++) {
        t->pk[k] = strdup(ix->cols[k]);
        struct mig_cat_column *c = mig_catalog_column(t, ix->cols[k]);
        t->pk_types[k] = strdup(c ? c->type : "text");
    }
}

/* The backfill's keyset needs the primary key, or failing that a unique index
 * over NOT NULL columns (same guarantee: total order, no NULLs). */
static void choose_key(struct mig_cat_table *t, const PGresult *r)
{
    for (size_t i = 0; t->idx && i < t->nidx && !t->pk; i++) {
        const struct mig_cat_index *ix = &t->idx[i];
        int all_notnull = PQgetvalue(r, (int)i, 7)[0] == 't';
        if (ix->simple && ix->ncols > 0 && (ix->primary || (ix->unique && all_notnull)))
            take_key(t, ix);
    }
}

static int load_indexes(PGconn *conn, struct mig_cat_table *t, char *err, size_t errlen)
{
    PGresult *r = mig_catalog_query_table(conn, INDEXES_SQL, t, err, errlen);
    if (!r)
        return -1;
    int n = PQntuples(r);
    t->idx = calloc((size_t)n + 1, sizeof *t->idx);
    for (int i = 0; t->idx && i < n; i++) {
        struct mig_cat_index *ix = &t->idx[t->nidx++];
        ix->name = strdup(PQgetvalue(r, i, 0));
        ix->method = strdup(PQgetvalue(r, i, 1));
        ix->unique = PQgetvalue(r, i, 2)[0] == 't';
        ix->primary = PQgetvalue(r, i, 3)[0] == 't';
        ix->simple = PQgetvalue(r, i, 4)[0] == 't';
        ix->constraint = dup_or_null(r, i, 6);
        if (ix->simple)
            mig_catalog_json_names(PQgetisnull(r, i, 5) ? NULL : PQgetvalue(r, i, 5), &ix->cols, &ix->ncols);
        if (ix->simple && ix->ncols == 0)
            ix->simple = 0;
    }
    choose_key(t, r);
    PQclear(r);
    return 0;
}

static int load_fkeys(PGconn *conn, struct mig_cat_table *t, const char *sql, struct mig_cat_fkey **out,
                      size_t *count, char *err, size_t errlen)
{
    PGresult *r = mig_catalog_query_table(conn, sql, t, err, errlen);
    if (!r)
        return -1;
    int n = PQntuples(r);
    *out = calloc((size_t)n + 1, sizeof **out);
    for (int i = 0; *out && i < n; i++) {
        struct mig_cat_fkey *f = &(*out)[(*count)++];
        f->name = strdup(PQgetvalue(r, i, 0));
        f->column = strdup(PQgetvalue(r, i, 1));
        f->ref_table = strdup(PQgetvalue(r, i, 2));
        f->ref_column = strdup(PQgetvalue(r, i, 3));
        f->on_delete = PQgetvalue(r, i, 4)[0];
        f->on_update = PQgetvalue(r, i, 5)[0];
    }
    PQclear(r);
    return 0;
}

static int load_class(PGconn *conn, struct mig_cat_table *t, char *err, size_t errlen)
{
    PGresult *r = mig_catalog_query_table(conn, CLASS_SQL, t, err, errlen);
    if (!r)
        return -1;
    t->est_rows = PQntuples(r) ? atof(PQgetvalue(r, 0, 0)) : 0;
    t->relkind = PQntuples(r) ? PQgetvalue(r, 0, 1)[0] : 'r';
    t->trigger_rank = PQntuples(r) ? atoi(PQgetvalue(r, 0, 2)) : 0;
    PQclear(r);
    return 0;
}

/* Whether the table has no row, exactly (the estimate of a table never
 * analyzed says 0); read only for an add_column that has no value to give
 * a NOT NULL column (op_add_column.c), the one operation that asks. */
static void load_empty(PGconn *conn, const struct mig_op *op, struct mig_cat_table *t)
{
    if (!t || !t->exists || op->col.nullable != 0 || op->col.default_expr || op->up)
        return;
    char *q = mig_quote_qname(t->schema, t->name);
    struct mig_str s = {0};
    mig_str_addf(&s, "SELECT NOT EXISTS (SELECT 1 FROM %s)", q ? q : "");
    free(q);
    char *sql = mig_str_take(&s);
    PGresult *r = sql ? PQexec(conn, sql) : NULL;
    t->empty = r && PQresultStatus(r) == PGRES_TUPLES_OK && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    free(sql);
}

static void set_ref(struct mig_cat_ref *f, const char *name, const char *schema, const char *table,
                    const char *cols_json)
{
    f->name = strdup(name);
    f->schema = strdup(schema);
    f->table = strdup(table);
    mig_catalog_json_names(cols_json, &f->cols, &f->ncols);
}

static int load_referenced_by(PGconn *conn, struct mig_cat_table *t, char *err, size_t errlen)
{
    PGresult *r = mig_catalog_query_table(conn, REFERENCED_BY_SQL, t, err, errlen);
    if (!r)
        return -1;
    int n = PQntuples(r);
    t->refs = calloc((size_t)n + 1, sizeof *t->refs);
    for (int i = 0; t->refs && i < n; i++)
        set_ref(&t->refs[t->nrefs++], PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
                PQgetisnull(r, i, 3) ? NULL : PQgetvalue(r, i, 3));
    PQclear(r);
    return 0;
}

/* [[conname, schema, table, [column, ...]], ...] */
static void parse_refs(const char *text, struct mig_cat_ref **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    json_t *arr = text ? json_loads(text, 0, NULL) : NULL;
    size_t len = json_array_size(arr);
    if (len > 0 && (*out = calloc(len, sizeof **out)) != NULL) {
        for (size_t i = 0; i < len; i++) {
            json_t *e = json_array_get(arr, i);
            const char *name = json_string_value(json_array_get(e, 0));
            const char *schema = json_string_value(json_array_get(e, 1));
            const char *table = json_string_value(json_array_get(e, 2));
            char *cols = json_dumps(json_array_get(e, 3), JSON_ENCODE_ANY);
            set_ref(&(*out)[(*n)++], name ? name : "", schema ? schema : "", table ? table : "", cols);
            free(cols);
        }
    }
    json_decref(arr);
}

static int load_table(PGconn *conn, struct mig_cat_table *t, char *err, size_t errlen)
{
    if (load_columns(conn, t, err, errlen) != 0)
        return -1;
    if (!t->exists)
        return 0;
    if (load_indexes(conn, t, err, errlen) ||
        load_fkeys(conn, t, FKEYS_SQL, &t->fk, &t->nfk, err, errlen) ||
        load_fkeys(conn, t, INCOMING_FKEYS_SQL, &t->in_fk, &t->nin_fk, err, errlen) ||
        load_dependents(conn, t, err, errlen) ||
        load_referenced_by(conn, t, err, errlen) ||
        load_class(conn, t, err, errlen) ||
        mig_catalog_load_partitions(conn, t, err, errlen))
        return -1;
    return 0;
}

struct mig_cat_table *mig_catalog_table(const struct mig_catalog *cat, const char *schema,
                                        const char *name)
{
    for (size_t i = 0; cat && i < cat->n; i++)
        if (strcmp(cat->tables[i].schema, schema) == 0 && strcmp(cat->tables[i].name, name) == 0)
            return &cat->tables[i];
    return NULL;
}

struct mig_cat_column *mig_catalog_column(const struct mig_cat_table *t, const char *name)
{
    for (size_t i = 0; t && i < t->ncols; i++)
        if (strcmp(t->cols[i].name, name) == 0)
            return &t->cols[i];
    return NULL;
}

struct mig_cat_index *mig_catalog_index(const struct mig_cat_table *t, const char *name)
{
    for (size_t i = 0; t && i < t->nidx; i++)
        if (strcmp(t->idx[i].name, name) == 0)
            return &t->idx[i];
    return NULL;
}

static int add_table(PGconn *conn, struct mig_catalog *cat, const char *schema, const char *name,
                     char *err, size_t errlen)
{
    if (!name || mig_catalog_table(cat, schema, name))
        return 0;
    struct mig_cat_table *grown = realloc(cat->tables, (cat->n + 1) * sizeof *grown);
    if (!grown) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    cat->tables = grown;
    struct mig_cat_table *t = &cat->tables[cat->n++];
    memset(t, 0, sizeof *t);
    t->schema = strdup(schema);
    t->name = strdup(name);
    return load_table(conn, t, err, errlen);
}

const struct mig_cat_named_index *mig_catalog_named_index(const struct mig_catalog *cat, const char *schema,
                                                          const char *name)
{
    for (size_t i = 0; cat && i < cat->nindexes; i++)
        if (strcmp(cat->indexes[i].schema, schema) == 0 && strcmp(cat->indexes[i].name, name) == 0)
            return &cat->indexes[i];
    return NULL;
}

static int add_named_index(PGconn *conn, struct mig_catalog *cat, const char *schema, const char *name,
                           char *err, size_t errlen)
{
    if (mig_catalog_named_index(cat, schema, name))
        return 0;
    struct mig_cat_named_index *grown = realloc(cat->indexes, (cat->nindexes + 1) * sizeof *grown);
    if (!grown) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    cat->indexes = grown;
    struct mig_cat_named_index *ix = &cat->indexes[cat->nindexes++];
    memset(ix, 0, sizeof *ix);
    ix->schema = strdup(schema);
    ix->name = strdup(name);
    PGresult *r = query_named(conn, NAMED_INDEX_SQL, schema, name, err, errlen);
    if (!r)
        return -1;
    if (PQntuples(r) > 0) {
        ix->exists = 1;
        ix->relkind = PQgetvalue(r, 0, 0)[0];
        ix->table = strdup(PQgetvalue(r, 0, 1));
        ix->constraint = dup_or_null(r, 0, 2);
        ix->contype = PQgetisnull(r, 0, 3) ? 0 : PQgetvalue(r, 0, 3)[0];
        ix->parent = dup_or_null(r, 0, 4);
        parse_refs(PQgetisnull(r, 0, 5) ? NULL : PQgetvalue(r, 0, 5), &ix->fkeys, &ix->nfkeys);
    }
    PQclear(r);
    return 0;
}

/* Relation names ('r') and constraint names ('c') of a schema, each
 * sorted the way strcmp sorts (COLLATE "C"). */
static const char *NAMES_SQL =
    "SELECT kind, name FROM ("
    " SELECT 'r' AS kind, c.relname::text AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    "  WHERE n.nspname = $1"
    " UNION"
    " SELECT 'c', con.conname::text FROM pg_constraint con JOIN pg_namespace n ON n.oid = con.connamespace"
    "  WHERE n.nspname = $1) x"
    " ORDER BY kind, name COLLATE \"C\"";

static const struct mig_cat_names *schema_names(const struct mig_catalog *cat, const char *schema)
{
    for (size_t i = 0; cat && i < cat->nnames; i++)
        if (strcmp(cat->names[i].schema, schema) == 0)
            return &cat->names[i];
    return NULL;
}

static int add_schema_names(PGconn *conn, struct mig_catalog *cat, const char *schema, char *err, size_t errlen)
{
    if (schema_names(cat, schema))
        return 0;
    struct mig_cat_names *grown = realloc(cat->names, (cat->nnames + 1) * sizeof *grown);
    if (!grown)
        return snprintf(err, errlen, "out of memory"), -1;
    cat->names = grown;
    struct mig_cat_names *nm = &cat->names[cat->nnames++];
    memset(nm, 0, sizeof *nm);
    nm->schema = strdup(schema);
    const char *params[1] = {schema};
    PGresult *r = PQexecParams(conn, NAMES_SQL, 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "reading the names taken in schema %s: %s", schema, PQerrorMessage(conn));
        PQclear(r);
        return -1;
    }
    int rows = PQntuples(r);
    nm->rels = calloc((size_t)rows + 1, sizeof(char *));
    nm->cons = calloc((size_t)rows + 1, sizeof(char *));
    for (int i = 0; nm->rels && nm->cons && i < rows; i++) {
        int rel = PQgetvalue(r, i, 0)[0] == 'r';
        char *name = strdup(PQgetvalue(r, i, 1));
        if (rel)
            nm->rels[nm->nrels++] = name;
        else
            nm->cons[nm->ncons++] = name;
    }
    PQclear(r);
    if (!nm->rels || !nm->cons)
        return snprintf(err, errlen, "out of memory"), -1;
    return 0;
}

static int cmp_name(const void *key, const void *elem)
{
    const char *e = *(const char *const *)elem;
    return strcmp((const char *)key, e ? e : "");
}

int mig_catalog_name_taken(const struct mig_catalog *cat, const char *schema, const char *name, int relations)
{
    const struct mig_cat_names *nm = schema_names(cat, schema);
    if (!nm)
        return 0;
    if (nm->ncons && bsearch(name, nm->cons, nm->ncons, sizeof(char *), cmp_name))
        return 1;
    return relations && nm->nrels && bsearch(name, nm->rels, nm->nrels, sizeof(char *), cmp_name) != NULL;
}

int mig_catalog_load(PGconn *conn, const struct migration *m, struct mig_catalog *cat,
                     char *err, size_t errlen)
{
    memset(cat, 0, sizeof *cat);
    for (size_t i = 0; i < m->nops; i++) {
        const struct mig_op *op = &m->ops[i];
        /* create_index: an index of its name already there (a rollback must not drop it) */
        if ((op->kind == MIG_DROP_INDEX || (op->kind == MIG_CREATE_INDEX && op->name)) &&
            add_named_index(conn, cat, op->schema, op->name, err, errlen) != 0)
            return -1;
        const char *name = op->kind == MIG_RENAME_TABLE ? op->from : op->table;
        if (add_table(conn, cat, op->schema, name, err, errlen) != 0)
            return -1;
        if (op->kind == MIG_RENAME_TABLE && add_table(conn, cat, op->schema, op->to, err, errlen) != 0)
            return -1;
        if (op->kind == MIG_ADD_COLUMN)
            load_empty(conn, op, mig_catalog_table(cat, op->schema, op->table));
        if (op->ref_table && add_table(conn, cat, op->schema, op->ref_table, err, errlen) != 0)
            return -1;
        if (mig_catalog_load_objects(conn, m, op, cat, err, errlen) != 0)
            return -1;
        if (add_schema_names(conn, cat, op->schema, err, errlen) != 0)
            return -1;
    }
    return mig_catalog_load_shapes(conn, m, cat, err, errlen);
}

static void free_fkeys(struct mig_cat_fkey *fk, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(fk[i].name); free(fk[i].column); free(fk[i].ref_table); free(fk[i].ref_column);
    }
    free(fk);
}

static void free_refs(struct mig_cat_ref *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(f[i].name); free(f[i].schema); free(f[i].table);
        for (size_t k = 0; k < f[i].ncols; k++)
            free(f[i].cols[k]);
        free(f[i].cols);
    }
    free(f);
}

static void free_table(struct mig_cat_table *t)
{
    for (size_t i = 0; i < t->ncols; i++) {
        free(t->cols[i].name); free(t->cols[i].type); free(t->cols[i].default_expr);
        free(t->cols[i].comment); free(t->cols[i].sequence); free(t->cols[i].sequence_type);
        free(t->cols[i].sequence_options);
        for (size_t k = 0; k < t->cols[i].ngrants; k++)
            free(t->cols[i].grants[k]);
        free(t->cols[i].grants);
    }
    free(t->cols);
    for (size_t i = 0; i < t->ndeps; i++) {
        free(t->deps[i].column); free(t->deps[i].name); free(t->deps[i].describe);
        free(t->deps[i].carry); free(t->deps[i].carry_drop); free(t->deps[i].refusal);
    }
    free(t->deps);
    for (size_t i = 0; i < t->npk; i++) {
        free(t->pk ? t->pk[i] : NULL);
        free(t->pk_types ? t->pk_types[i] : NULL);
    }
    free(t->pk);
    free(t->pk_types);
    for (size_t i = 0; i < t->nidx; i++) {
        struct mig_cat_index *ix = &t->idx[i];
        free(ix->name); free(ix->method); free(ix->constraint);
        for (size_t k = 0; k < ix->ncols; k++)
            free(ix->cols[k]);
        free(ix->cols);
    }
    free(t->idx);
    free_fkeys(t->fk, t->nfk);
    free_fkeys(t->in_fk, t->nin_fk);
    free_refs(t->refs, t->nrefs);
    mig_catalog_free_partitions(t);
    mig_catalog_free_shape(t);
    free(t->schema);
    free(t->name);
}

void mig_catalog_free(struct mig_catalog *cat)
{
    for (size_t i = 0; cat && i < cat->n; i++)
        free_table(&cat->tables[i]);
    for (size_t i = 0; cat && i < cat->nindexes; i++) {
        struct mig_cat_named_index *ix = &cat->indexes[i];
        free(ix->schema); free(ix->name); free(ix->table); free(ix->constraint); free(ix->parent);
        free_refs(ix->fkeys, ix->nfkeys);
    }
    if (cat) {
        mig_catalog_free_objects(cat);
        free(cat->indexes);
        cat->indexes = NULL;
        cat->nindexes = 0;
        free(cat->tables);
        free(cat->default_rewrites);
        cat->default_rewrites = NULL;
        free(cat->retype_in_place);
        cat->retype_in_place = NULL;
        for (size_t i = 0; i < cat->nnames; i++) {
            struct mig_cat_names *nm = &cat->names[i];
            for (size_t k = 0; k < nm->nrels; k++)
                free(nm->rels[k]);
            for (size_t k = 0; k < nm->ncons; k++)
                free(nm->cons[k]);
            free(nm->rels);
            free(nm->cons);
            free(nm->schema);
        }
        free(cat->names);
        cat->names = NULL;
        cat->nnames = 0;
    }
}

/* Planning and loading a table's key ranges (see backfill_ranges.h). */
#include "backfill_ranges.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "migration_sql.h"

#define RANGE_COLUMNS "range_no, range_lo, range_hi, last_key, rows_done, rows_updated, batches, done, paused, est_rows"
/* The checkpoint's columns start after range_no, range_lo and range_hi. */
#define CHECKPOINT_FIRST 3
/* Pages a sample reads when the histogram cannot be used (random pages, a
 * few megabytes: milliseconds next to the backfill). */
#define SAMPLE_PAGES "300"
/* A histogram older than this share of the table's rows is not used. */
#define STALE_SHARE "0.2"

const char BACKFILL_RANGES_LOAD_SQL[] =
    "SELECT " RANGE_COLUMNS " FROM pgtandem.backfill_progress"
    " WHERE migration = $1 AND schema_name = $2 AND table_name = $3 ORDER BY range_no";

/* Range j of n runs from pick(j) to pick(j + 1) of the c candidates, with
 * pick(j) = round(j * (c + 1) / n): evenly spread, strictly increasing while
 * n <= c + 1 (backfill_ranges_choose keeps it so); the first range has no
 * lower bound and the last ends at the largest key when planned. The SELECT returns the rows when a
 * concurrent engine made them first (the INSERT then returns none). */
const char BACKFILL_RANGES_CREATE_SQL[] =
    "WITH p AS (SELECT coalesce($5::text[], '{}') AS c, $6::int AS n),"
    " made AS (INSERT INTO pgtandem.backfill_progress"
    "   (migration, schema_name, table_name, range_no, range_lo, range_hi, est_rows)"
    "  SELECT $1, $2, $3, j,"
    "   CASE WHEN j > 0 THEN c[round(j * (cardinality(c) + 1)::numeric / n)::int] END,"
    "   CASE WHEN j < n - 1 THEN c[round((j + 1) * (cardinality(c) + 1)::numeric / n)::int] ELSE $7::text END,"
    "   $4::float8 / n"
    "  FROM p, generate_series(0, n - 1) j ON CONFLICT DO NOTHING RETURNING " RANGE_COLUMNS ")"
    " SELECT * FROM made UNION ALL"
    " SELECT " RANGE_COLUMNS " FROM pgtandem.backfill_progress"
    "  WHERE migration = $1 AND schema_name = $2 AND table_name = $3 ORDER BY range_no";

/* BACKFILL_MAX_RANGES - 1 candidate bounds at even quantiles of the leading key column:
 * the histogram's (equal-frequency buckets) while ANALYZE saw most of the
 * rows there are now, else percentiles of a sample of pages. Each is moved
 * to the first real key at or after it (an index probe), so the bounds are
 * keys and their order is the column's own. */
char *backfill_ranges_plan_sql(const struct mig_bf_table *t)
{
    const char *k = t->pk[0], *type = t->pk_types[0], *q = t->qname;
    struct mig_str s = {0};
    mig_str_add(&s,
        "WITH rel AS (SELECT c.oid, greatest(c.reltuples, 0)::float8 AS tuples,"
        "  least(100, 100.0 * " SAMPLE_PAGES " / greatest(1, pg_relation_size(c.oid)"
        "   / current_setting('block_size')::int))::float8 AS pct FROM pg_class c WHERE c.oid = $1::regclass),");
    mig_str_addf(&s,
        " hist AS (SELECT s.histogram_bounds::text::%s[] AS h FROM pg_stats s, rel"
        "  WHERE s.schemaname = $2 AND s.tablename = $3 AND s.attname = $4 AND cardinality(s.histogram_bounds) > 2"
        "   AND (SELECT a.n_mod_since_analyze FROM pg_stat_all_tables a WHERE a.relid = rel.oid)"
        "    <= " STALE_SHARE " * rel.tuples ORDER BY s.inherited DESC LIMIT 1),", type);
    mig_str_addf(&s,
        " samp AS (SELECT count(*)::float8 AS n, percentile_disc(ARRAY(SELECT i::float8 / %d"
        "   FROM generate_series(1, %d) i)) WITHIN GROUP (ORDER BY %s) AS q"
        "  FROM %s TABLESAMPLE SYSTEM ((SELECT pct FROM rel)) WHERE NOT EXISTS (SELECT 1 FROM hist)),",
        BACKFILL_MAX_RANGES, BACKFILL_MAX_RANGES - 1, k, q);
    mig_str_addf(&s,
        " cand AS (SELECT h[1 + (i * (cardinality(h) - 1)) / %d] AS v FROM hist, generate_series(1, %d) i"
        "  UNION ALL SELECT unnest(q) FROM samp),", BACKFILL_MAX_RANGES, BACKFILL_MAX_RANGES - 1);
    /* a bound at the largest key would leave the last range empty */
    mig_str_addf(&s,
        " snapped AS (SELECT DISTINCT s.%s AS k FROM cand CROSS JOIN LATERAL"
        "  (SELECT %s FROM %s WHERE %s >= cand.v ORDER BY %s LIMIT 1) s"
        "  WHERE s.%s < (SELECT %s FROM %s ORDER BY %s DESC LIMIT 1))",
        k, k, q, k, k, k, k, q, k);
    mig_str_add(&s,
        " SELECT (SELECT array_agg(k ORDER BY k)::text[] FROM snapped), (SELECT count(*) FROM snapped),"
        "  CASE WHEN EXISTS (SELECT 1 FROM hist) THEN 'histogram' ELSE 'sample' END,"
        "  CASE WHEN EXISTS (SELECT 1 FROM hist) THEN (SELECT tuples FROM rel)"
        "   ELSE (SELECT samp.n * 100 / rel.pct FROM samp, rel) END,");
    /* cast outside: ORDER BY would take the name for the output column's, and order the keys as text */
    mig_str_addf(&s, "  (SELECT m.%s::text FROM (SELECT %s FROM %s ORDER BY %s DESC LIMIT 1) m)", k, k, q, k);
    return mig_str_take(&s);
}

/* "name" (as quoted in the plan) -> name. */
static void unquote_ident(const char *quoted, char *out, size_t outlen)
{
    size_t n = 0;
    const char *p = quoted;
    if (*p == '"')
        p++;
    for (; *p && n + 1 < outlen; p++) {
        if (*p == '"' && p[1] == '"')
            p++;
        else if (*p == '"')
            break;
        out[n++] = *p;
    }
    out[n] = '\0';
}

int backfill_ranges_plan_params(const struct mig_bf_table *t, const char **values, char *namebuf, size_t namelen)
{
    unquote_ident(t->pk[0], namebuf, namelen);
    values[0] = t->qname;
    values[1] = t->schema;
    values[2] = t->name;
    values[3] = namebuf;
    return 4;
}

void backfill_ranges_choose(const struct mig_bf_table *t, const PGresult *r, const char *error, int *nranges,
                            double *est_rows, char *why, size_t whylen)
{
    *nranges = 1;
    *est_rows = t->est_rows;
    if (error || !r || PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        snprintf(why, whylen, "one range: its key ranges could not be planned (%.300s)",
                 error ? error : r ? PQresultErrorMessage(r) : "no result");
        return;
    }
    double seen = PQgetisnull(r, 0, 3) ? 0 : atof(PQgetvalue(r, 0, 3));
    if (seen > *est_rows)
        *est_rows = seen;
    long candidates = atol(PQgetvalue(r, 0, 1));
    double fit = floor(*est_rows / BACKFILL_MIN_RANGE_ROWS);
    int n = fit > BACKFILL_MAX_RANGES ? BACKFILL_MAX_RANGES : fit < 1 ? 1 : (int)fit;
    if (n > candidates + 1)
        n = (int)candidates + 1;
    *nranges = n;
    const char *method = !strcmp(PQgetvalue(r, 0, 2), "histogram") ? "the statistics' histogram"
                                                                   : "a sample of its pages";
    if (n > 1)
        snprintf(why, whylen, "%d ranges of its key, from %s (about %.0f rows)", n, method, *est_rows);
    else if (fit < 2)
        snprintf(why, whylen, "one range: about %.0f rows, fewer than two ranges' worth (%d rows each)", *est_rows,
                 BACKFILL_MIN_RANGE_ROWS);
    else
        snprintf(why, whylen, "one range: %s found no value of its leading key column to split at (a single "
                 "value?)", method);
}

static const char *plan_value(const PGresult *plan, int col)
{
    return plan && PQresultStatus(plan) == PGRES_TUPLES_OK && PQntuples(plan) == 1 && PQnfields(plan) > col &&
           !PQgetisnull(plan, 0, col) ? PQgetvalue(plan, 0, col) : NULL;
}

int backfill_ranges_create_params(const struct mig_bf_table *t, const char *migration, const PGresult *plan,
                                  int nranges, double est_rows, const char **values, char *numbuf, size_t numlen)
{
    size_t half = numlen / 2;
    snprintf(numbuf, half, "%.0f", est_rows);
    snprintf(numbuf + half, numlen - half, "%d", nranges);
    values[0] = migration;
    values[1] = t->schema;
    values[2] = t->name;
    values[3] = numbuf;
    values[4] = plan_value(plan, 0);
    values[5] = numbuf + half;
    values[6] = plan_value(plan, 4);
    return BACKFILL_RANGES_CREATE_NPARAMS;
}

static char *dup_or_null(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : strdup(PQgetvalue(r, row, col));
}

int backfill_ranges_apply(const PGresult *r, const struct mig_bf_table *t, const char *migration,
                          const struct mig_backfill_settings *cfg, struct backfill **v, size_t *n, char *err,
                          size_t errlen)
{
    int rows = PQntuples(r);
    if (rows == 0) {
        snprintf(err, errlen, "the backfill checkpoints of %s are missing", t->qname);
        return -1;
    }
    struct backfill *grown = realloc(*v, (*n + (size_t)rows) * sizeof *grown);
    if (!grown) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    *v = grown;
    for (int i = 0; i < rows; i++) {
        struct backfill *b = &grown[*n];
        backfill_init(b, t, migration, cfg);
        b->range_no = atoi(PQgetvalue(r, i, 0));
        b->range_lo = dup_or_null(r, i, 1);
        b->range_hi = dup_or_null(r, i, 2);
        b->est_total = b->est_planned = 0; /* the row's share of the table's */
        (*n)++;
        if ((!PQgetisnull(r, i, 1) && !b->range_lo) || (!PQgetisnull(r, i, 2) && !b->range_hi)) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        if (backfill_apply_checkpoint_row(b, r, i, CHECKPOINT_FIRST, err, errlen) != 0)
            return -1;
        b->est_planned = b->est_total;
        if ((double)b->rows_done > b->est_total)
            b->est_total = (double)b->rows_done;
    }
    return 0;
}

static PGresult *exec(PGconn *conn, const char *sql, int n, const char *const *values, char *err, size_t errlen)
{
    PGresult *r = PQexecParams(conn, sql, n, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        return r;
    snprintf(err, errlen, "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(conn));
    size_t len = strlen(err);
    while (len > 0 && (err[len - 1] == '\n' || err[len - 1] == ' '))
        err[--len] = '\0';
    PQclear(r);
    return NULL;
}

int backfill_ranges_load(PGconn *conn, const struct mig_bf_table *t, const char *migration,
                         const struct mig_backfill_settings *cfg, struct backfill **v, size_t *n, char *err,
                         size_t errlen)
{
    const char *values[BACKFILL_RANGES_CREATE_NPARAMS];
    char why[512], plan_err[512];
    const char *key[3] = {migration, t->schema, t->name};
    PGresult *r = exec(conn, BACKFILL_RANGES_LOAD_SQL, 3, key, err, errlen);
    if (r && PQntuples(r) == 0) {
        PQclear(r);
        char name[256];
        char *sql = backfill_ranges_plan_sql(t);
        backfill_ranges_plan_params(t, values, name, sizeof name);
        snprintf(plan_err, sizeof plan_err, "out of memory");
        PGresult *plan = sql ? exec(conn, sql, 4, values, plan_err, sizeof plan_err) : NULL;
        free(sql);
        if (PQstatus(conn) != CONNECTION_OK) {
            snprintf(err, errlen, "planning the backfill ranges of %s: %s", t->qname, plan_err);
            PQclear(plan);
            return -1;
        }
        int nranges;
        double est;
        backfill_ranges_choose(t, plan, plan ? NULL : plan_err, &nranges, &est, why, sizeof why);
        log_info("backfill of %s: %s", t->qname, why);
        char num[64];
        int nv = backfill_ranges_create_params(t, migration, plan, nranges, est, values, num, sizeof num);
        r = exec(conn, BACKFILL_RANGES_CREATE_SQL, nv, values, err, errlen);
        PQclear(plan);
    }
    if (!r) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", err);
        snprintf(err, errlen, "loading the backfill checkpoints of %s: %s", t->qname, msg);
        return -1;
    }
    int rc = backfill_ranges_apply(r, t, migration, cfg, v, n, err, errlen);
    PQclear(r);
    return rc;
}

void backfill_ranges_free(struct backfill *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        backfill_free(&v[i]);
    free(v);
}

/* Read-only views of the engine's state: `migrate status` (JSON built from
 * schema pgtandem), `migrate verify` (row-by-row comparison of the two
 * shapes), and the list of applied migrations that lint checks files against. */
#include "engine.h"

#include <stdlib.h>
#include <string.h>

#include "migration_lifecycle.h"
#include "migration_sql.h"

static json_t *cell(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? json_null() : json_string(PQgetvalue(r, row, col));
}

/* One entry per table, its key ranges summed, each range listed with
 * its own checkpoint; last_key is the furthest range's (the table's own
 * when it is one range). */
static json_t *progress_json(PGconn *conn, const char *name)
{
    const char *v[1] = {name};
    PGresult *r = PQexecParams(conn,
        "SELECT schema_name, table_name, sum(rows_done), sum(rows_updated), sum(batches), sum(est_rows),"
        "       bool_and(done), bool_or(paused),"
        "       (array_agg(array_to_string(last_key, ',') ORDER BY range_no DESC)"
        "         FILTER (WHERE last_key IS NOT NULL))[1],"
        "       json_agg(json_build_object('range', range_no, 'after', range_lo, 'upto', range_hi,"
        "         'rows_done', rows_done, 'batches', batches, 'done', done,"
        "         'last_key', array_to_string(last_key, ',')) ORDER BY range_no)::text"
        "  FROM pgtandem.backfill_progress WHERE migration = $1"
        " GROUP BY schema_name, table_name ORDER BY schema_name, table_name",
        1, NULL, v, NULL, NULL, 0);
    json_t *arr = json_array();
    for (int i = 0; PQresultStatus(r) == PGRES_TUPLES_OK && i < PQntuples(r); i++) {
        double done = atof(PQgetvalue(r, i, 2)), est = atof(PQgetvalue(r, i, 5));
        int finished = PQgetvalue(r, i, 6)[0] == 't';
        double pct = finished ? 100.0 : (est > 0 ? 100.0 * done / est : 0.0);
        json_t *ranges = json_loads(PQgetvalue(r, i, 9), 0, NULL);
        json_array_append_new(arr, json_pack("{s:o, s:o, s:I, s:I, s:I, s:f, s:f, s:b, s:b, s:o, s:o}",
            "schema", cell(r, i, 0), "table", cell(r, i, 1), "rows_done", (json_int_t)atoll(PQgetvalue(r, i, 2)),
            "rows_updated", (json_int_t)atoll(PQgetvalue(r, i, 3)), "batches", (json_int_t)atoll(PQgetvalue(r, i, 4)),
            "estimated_rows", est, "percent", pct > 100.0 ? 99.9 : pct, "done", finished,
            "paused", PQgetvalue(r, i, 7)[0] == 't', "last_key", cell(r, i, 8),
            "ranges", ranges ? ranges : json_array()));
    }
    PQclear(r);
    return arr;
}

int engine_status(struct engine *e, json_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!mig_state_exists(e->conn)) {
        *out = json_pack("{s:n, s:s}", "migration", "status", "none");
        return ENGINE_OK;
    }
    /* the migration in progress, else the one that moved last */
    char statuses[MIG_STATUS_SQL_LIST_MAX], sql[1024 + 3 * MIG_STATUS_SQL_LIST_MAX];
    if (mig_status_sql_list(MIG_SET_IN_PROGRESS, statuses, sizeof statuses) < 0) {
        snprintf(err, errlen, "the statuses in progress do not fit their buffer");
        return ENGINE_FAILED;
    }
    /* the one named; else the newest in progress, else the one that moved last */
    snprintf(sql, sizeof sql,
             "SELECT name, parent, status, checksum, started_at, backfilled_at, completed_at, rolled_back_at,"
             "       error, contract_attempts, contract_lock_wait_ms,"
             "       (SELECT coalesce(json_agg(json_build_object('migration', f.name, 'parent', f.parent,"
             "          'status', f.status) ORDER BY f.started_at, f.name), '[]') FROM pgtandem.migrations f"
             "         WHERE f.status IN (%s))"
             "  FROM pgtandem.migrations WHERE $1::text IS NULL OR name = $1"
             " ORDER BY (status IN (%s)) DESC, CASE WHEN status IN (%s) THEN started_at END DESC NULLS LAST,"
             " updated_at DESC LIMIT 1", statuses, statuses, statuses);
    const char *v[1] = {e->opt.target};
    PGresult *r = PQexecParams(e->conn, sql, 1, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "reading pgtandem.migrations: %s", PQerrorMessage(e->conn));
        PQclear(r);
        return ENGINE_FAILED;
    }
    if (PQntuples(r) == 0 && e->opt.target) {
        snprintf(err, errlen, "migration %s is not recorded", e->opt.target);
        PQclear(r);
        return ENGINE_INVALID;
    }
    if (PQntuples(r) == 0) {
        PQclear(r);
        *out = json_pack("{s:n, s:s}", "migration", "status", "none");
        return ENGINE_OK;
    }
    json_t *o = json_object();
    const char *keys[] = {"migration", "parent", "status", "checksum", "started_at", "backfilled_at",
                          "completed_at", "rolled_back_at", "error"};
    for (int i = 0; i < 9; i++)
        json_object_set_new(o, keys[i], cell(r, 0, i));
    json_object_set_new(o, "contract_attempts",
                        PQgetisnull(r, 0, 9) ? json_null() : json_integer(atoi(PQgetvalue(r, 0, 9))));
    json_object_set_new(o, "contract_lock_wait_ms",
                        PQgetisnull(r, 0, 10) ? json_null() : json_real(atof(PQgetvalue(r, 0, 10))));
    json_object_set_new(o, "backfill", progress_json(e->conn, PQgetvalue(r, 0, 0)));
    json_t *flight = json_loads(PQgetvalue(r, 0, 11), 0, NULL);
    json_object_set_new(o, "in_flight", flight ? flight : json_array());
    PQclear(r);
    *out = o;
    return ENGINE_OK;
}

static long long count_where(PGconn *conn, const struct mig_bf_table *t, const char *pred, char *err,
                             size_t errlen)
{
    struct mig_str s = {0};
    mig_str_addf(&s, "SELECT count(*) FROM %s WHERE %s", t->qname, pred);
    char *sql = mig_str_take(&s);
    PGresult *r = PQexec(conn, sql ? sql : "");
    free(sql);
    long long n = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        n = atoll(PQgetvalue(r, 0, 0));
    else
        snprintf(err, errlen, "verify %s: %s", t->qname, PQresultErrorMessage(r));
    PQclear(r);
    return n;
}

static void print_sample(PGconn *conn, const struct mig_bf_table *t, FILE *out)
{
    struct mig_str s = {0};
    mig_str_add(&s, "SELECT ");
    for (size_t k = 0; k < t->npk; k++)
        mig_str_addf(&s, "%s%s::text", k ? " || ',' || " : "", t->pk[k]);
    mig_str_addf(&s, " FROM %s WHERE %s LIMIT 10", t->qname, t->mismatch);
    char *sql = mig_str_take(&s);
    PGresult *r = PQexec(conn, sql ? sql : "");
    free(sql);
    for (int i = 0; PQresultStatus(r) == PGRES_TUPLES_OK && i < PQntuples(r); i++)
        fprintf(out, "  mismatch at key (%s)\n", PQgetvalue(r, i, 0));
    PQclear(r);
}

/* Each row is checked in the database (new IS DISTINCT FROM up(old)), in one
 * snapshot per table. */
int engine_verify(struct engine *e, FILE *out, char *err, size_t errlen)
{
    json_t *st = NULL;
    if (engine_status(e, &st, err, errlen) != ENGINE_OK)
        return ENGINE_FAILED;
    const char *status = json_string_value(json_object_get(st, "status"));
    const char *name = json_string_value(json_object_get(st, "migration"));
    if (!mig_word_in_progress(status)) {
        fprintf(out, "no migration in progress (last: %s, %s); nothing to compare\n", name ? name : "none",
                status ? status : "none");
        json_decref(st);
        return ENGINE_OK;
    }
    const char *v[1] = {name};
    PGresult *r = PQexecParams(e->conn, "SELECT plan FROM pgtandem.migrations WHERE name = $1", 1, NULL, v,
                               NULL, NULL, 0);
    struct mig_plan plan;
    int rc = ENGINE_OK;
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1 ||
        mig_plan_from_json(PQgetvalue(r, 0, 0), &plan, err, errlen) != 0) {
        PQclear(r);
        json_decref(st);
        return ENGINE_FAILED;
    }
    PQclear(r);
    PQclear(PQexec(e->conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"));
    long long total_bad = 0;
    for (size_t i = 0; i < plan.nbf && rc == ENGINE_OK; i++) {
        const struct mig_bf_table *t = &plan.bf[i];
        if (!t->mismatch)
            continue;
        long long rows = count_where(e->conn, t, "true", err, errlen);
        long long pending = count_where(e->conn, t, t->pending, err, errlen);
        char pred[8192];
        snprintf(pred, sizeof pred, "(%s) AND NOT (%s)", t->mismatch, t->pending);
        long long bad = count_where(e->conn, t, pred, err, errlen);
        if (rows < 0 || pending < 0 || bad < 0) {
            rc = ENGINE_FAILED;
            break;
        }
        fprintf(out, "%s: %lld rows, %lld not yet backfilled, %lld where the new shape disagrees with up(old)\n",
                t->qname, rows, pending, bad);
        if (bad > 0)
            print_sample(e->conn, t, out);
        total_bad += bad;
    }
    PQclear(PQexec(e->conn, "COMMIT"));
    mig_plan_free(&plan);
    json_decref(st);
    if (rc == ENGINE_OK && total_bad > 0) {
        snprintf(err, errlen, "%lld row(s) disagree between the old and the new shape", total_bad);
        return ENGINE_FAILED;
    }
    if (rc == ENGINE_OK)
        fprintf(out, "verify: OK, both shapes agree\n");
    return rc;
}

int engine_applied(struct engine *e, json_t **out, char *err, size_t errlen)
{
    *out = json_object();
    if (!mig_state_exists(e->conn))
        return ENGINE_OK;
    PGresult *r = PQexec(e->conn, "SELECT name, checksum, status, parent FROM pgtandem.migrations");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "reading pgtandem.migrations: %s", PQerrorMessage(e->conn));
        PQclear(r);
        return ENGINE_FAILED;
    }
    for (int i = 0; i < PQntuples(r); i++)
        json_object_set_new(*out, PQgetvalue(r, i, 0),
                            json_pack("{s:s, s:s, s:s?}", "checksum", PQgetvalue(r, i, 1), "status",
                                      PQgetvalue(r, i, 2), "parent",
                                      PQgetisnull(r, i, 3) ? NULL : PQgetvalue(r, i, 3)));
    PQclear(r);
    return ENGINE_OK;
}

int engine_alembic_versions(struct engine *e, json_t **out, char *err, size_t errlen)
{
    *out = json_array();
    PGresult *r = PQexec(e->conn, "SELECT to_regclass('alembic_version') IS NOT NULL");
    int exists = PQresultStatus(r) == PGRES_TUPLES_OK && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (!exists)
        return ENGINE_OK;
    r = PQexec(e->conn, "SELECT version_num FROM alembic_version");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "reading alembic_version: %s", PQerrorMessage(e->conn));
        PQclear(r);
        return ENGINE_FAILED;
    }
    for (int i = 0; i < PQntuples(r); i++)
        json_array_append_new(*out, json_string(PQgetvalue(r, i, 0)));
    PQclear(r);
    return ENGINE_OK;
}

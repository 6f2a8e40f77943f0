/* The backfill estimate of `migrate plan --estimate`: a sample of each table
 * the backfill walks is copied into a scratch schema with the columns expand
 * adds, the backfill's own batch statement (backfill_batch_sql, pointed at a
 * checkpoint table in the scratch schema) runs over it with the migration's
 * settings, and rows/s, WAL bytes per row and the share of rows that need
 * the update are scaled to the live table's size. */
#include "migration_estimate.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backfill.h"
#include "migration_sql.h"
#include "migration_state.h"
#include "progress_line.h"

/* Tables whose size is unknown (never analyzed) are counted when they are at
 * most this large; bigger ones are sized from the sample's row width. */
#define COUNT_LIMIT_BYTES (256.0 * 1024 * 1024)

/* ---- interruption: cancel the running statement, then clean up ---------- */

static PGcancel *volatile cancel_handle;
static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
    PGcancel *c = cancel_handle;
    char ignored[64];
    if (c)
        PQcancel(c, ignored, sizeof ignored);   /* async-signal-safe */
}

struct signals {
    struct sigaction old_int, old_term;
};

static void catch_signals(PGconn *conn, struct signals *s)
{
    interrupted = 0;
    cancel_handle = PQgetCancel(conn);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &s->old_int);
    sigaction(SIGTERM, &sa, &s->old_term);
}

/* The cleanup itself must not be cancelled, nor the process killed before
 * it ran: the cancel handle goes first, the handlers after the cleanup. */
static void detach_cancel(void)
{
    PGcancel *c = cancel_handle;
    cancel_handle = NULL;
    PQfreeCancel(c);
}

static void restore_signals(struct signals *s)
{
    sigaction(SIGINT, &s->old_int, NULL);
    sigaction(SIGTERM, &s->old_term, NULL);
}

/* ---- small query helpers ------------------------------------------------- */

static int failed(PGconn *conn, const PGresult *r, const char *doing, char *err, size_t errlen)
{
    const char *msg = r ? PQresultErrorMessage(r) : PQerrorMessage(conn);
    if (interrupted)
        snprintf(err, errlen, "estimate interrupted while %s", doing);
    else
        snprintf(err, errlen, "estimate: %s: %s", doing, msg && msg[0] ? msg : "no result");
    size_t n = strlen(err);
    while (n > 0 && (err[n - 1] == '\n' || err[n - 1] == ' '))
        err[--n] = '\0';
    return -1;
}

/* Runs sql (owned, freed here) with params; returns the result on success. */
static PGresult *query(PGconn *conn, char *sql, int n, const char *const *values, const char *doing,
                       char *err, size_t errlen)
{
    if (!sql) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    PGresult *r = PQexecParams(conn, sql, n, NULL, values, NULL, NULL, 0);
    free(sql);
    ExecStatusType st = PQresultStatus(r);
    if (interrupted || (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)) {
        failed(conn, r, doing, err, errlen);
        PQclear(r);
        return NULL;
    }
    return r;
}

static int run(PGconn *conn, char *sql, const char *doing, char *err, size_t errlen)
{
    PGresult *r = query(conn, sql, 0, NULL, doing, err, errlen);
    PQclear(r);
    return r ? 0 : -1;
}

static char *scratch_qname(const struct estimate_report *rep, const char *name)
{
    return mig_quote_qname(rep->scratch, name);
}

/* ---- the scratch schema -------------------------------------------------- */

static int create_scratch(PGconn *conn, struct estimate_report *rep, char *err, size_t errlen)
{
    struct mig_str s = {0};
    mig_str_add(&s, "CREATE SCHEMA ");
    mig_str_ident(&s, rep->scratch);
    if (run(conn, mig_str_take(&s), "creating the scratch schema", err, errlen) != 0)
        return -1;
    /* The checkpoint table the batches advance, shaped like pgtandem's own. */
    char *q = scratch_qname(rep, "backfill_progress");
    mig_str_addf(&s, "CREATE TABLE %s (" MIG_BACKFILL_PROGRESS_COLUMNS("") ")", q ? q : "");
    free(q);
    if (run(conn, mig_str_take(&s), "creating the scratch checkpoint table", err, errlen) != 0)
        return -1;
    /* Stands in for the dual-write functions: the backfill's session skips
     * them, so only their presence costs (see add_triggers). */
    q = scratch_qname(rep, "stand_aside");
    mig_str_addf(&s, "CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$",
                 q ? q : "");
    free(q);
    return run(conn, mig_str_take(&s), "creating the scratch trigger function", err, errlen);
}

static int drop_scratch(PGconn *conn, const struct estimate_report *rep, char *err, size_t errlen)
{
    struct mig_str s = {0};
    mig_str_add(&s, "DROP SCHEMA IF EXISTS ");
    mig_str_ident(&s, rep->scratch);
    mig_str_add(&s, " CASCADE");
    char *sql = mig_str_take(&s);
    PGresult *r = sql ? PQexec(conn, sql) : NULL;
    free(sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        snprintf(err + strlen(err), errlen - strlen(err), "%sthe scratch schema could not be dropped (%s); "
                 "drop it with: DROP SCHEMA \"%s\" CASCADE", err[0] ? "; " : "",
                 PQstatus(conn) == CONNECTION_OK ? "error" : "connection lost", rep->scratch);
    PQclear(r);
    return ok ? 0 : -1;
}

/* ---- one table ------------------------------------------------------------ */

/* Size of the live table and its non-generated columns, quoted. */
static int live_shape(PGconn *conn, const struct mig_bf_table *t, double *reltuples, char **columns,
                      struct estimate_table *et, char *err, size_t errlen)
{
    const char *v[1] = {t->qname};
    PGresult *r = query(conn, strdup(
        "SELECT c.reltuples::float8, pg_relation_size(c.oid)::float8, a.attname FROM pg_class c"
        "  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
        "   AND a.attgenerated = ''"
        " WHERE c.oid = $1::regclass ORDER BY a.attnum"), 1, v, "reading the size of the table", err, errlen);
    if (!r)
        return -1;
    int n = PQntuples(r);
    struct mig_str list = {0};
    for (int i = 0; i < n; i++) {
        mig_str_add(&list, i ? ", " : "");
        mig_str_ident(&list, PQgetvalue(r, i, 2));
    }
    if (n > 0) {
        *reltuples = atof(PQgetvalue(r, 0, 0));
        et->table_bytes = atof(PQgetvalue(r, 0, 1));
        *columns = mig_str_take(&list);
    } else {
        mig_str_free(&list);
        snprintf(err, errlen, "estimate: table %s has no columns to copy", t->qname);
    }
    PQclear(r);
    return *columns ? 0 : -1;
}

/* The scratch copy: same columns, defaults, constraints (but foreign keys,
 * which LIKE never copies) and indexes, plus the columns expand adds. */
static int create_copy(PGconn *conn, const struct mig_bf_table *t, const char *copy, char *err, size_t errlen)
{
    struct mig_str s = {0};
    mig_str_addf(&s, "CREATE TABLE %s (LIKE %s INCLUDING ALL)", copy, t->qname);
    if (run(conn, mig_str_take(&s), "creating the scratch copy", err, errlen) != 0)
        return -1;
    for (size_t i = 0; i < t->nexprs; i++) {
        const struct mig_bf_expr *x = &t->exprs[i];
        if (!x->type) {
            snprintf(err, errlen, "estimate: %s: the type of \"%s\" is unknown", x->what, x->column);
            return -1;
        }
        mig_str_addf(&s, "ALTER TABLE %s ADD COLUMN IF NOT EXISTS ", copy);
        mig_str_ident(&s, x->column);
        mig_str_addf(&s, " %s", x->type);
        if (run(conn, mig_str_take(&s), "adding the new column to the scratch copy", err, errlen) != 0)
            return -1;
    }
    return 0;
}

/* The indexes this migration's create_index operations build on the table
 * at expand, before the backfill: every batch maintains them too. One the
 * copy cannot take (a key over a column it lacks) is left out. */
static int add_planned_indexes(PGconn *conn, const struct migration *m, const struct mig_bf_table *t,
                               const char *copy_schema, const char *copy_name, char *err, size_t errlen)
{
    for (size_t i = 0; i < m->nops && !interrupted; i++) {
        const struct mig_op *op = &m->ops[i];
        if (op->kind != MIG_CREATE_INDEX || strcmp(op->schema, t->schema) || strcmp(op->table, t->name))
            continue;
        char *sql = mig_index_sql_keys(op, copy_schema, copy_name, op->columns, 0);
        PGresult *r = sql ? PQexec(conn, sql) : NULL;
        free(sql);
        PQclear(r);
    }
    return interrupted ? failed(conn, NULL, "adding the migration's indexes to the scratch copy", err, errlen) : 0;
}

/* One trigger per operation, as expand installs them (BEFORE INSERT OR
 * UPDATE, skipped by the backfill's session): Postgres fetches and locks
 * every row an UPDATE changes once a BEFORE ROW trigger exists, skipped or
 * not, which is a good part of a batch's cost. */
static int add_triggers(PGconn *conn, const struct estimate_report *rep, const struct mig_bf_table *t,
                        const char *copy, char *err, size_t errlen)
{
    char *fn = scratch_qname(rep, "stand_aside");
    int rc = fn ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < t->nexprs; i++) {
        struct mig_str s = {0};
        mig_str_addf(&s, "CREATE TRIGGER \"tg_%zu\" BEFORE INSERT OR UPDATE ON %s FOR EACH ROW WHEN"
                     " (current_setting('" MIG_BACKFILL_GUC "', true) IS DISTINCT FROM 'on') EXECUTE FUNCTION %s()",
                     i, copy, fn);
        rc = run(conn, mig_str_take(&s), "adding the trigger to the scratch copy", err, errlen);
    }
    free(fn);
    return rc;
}

/* The first rows in key order: an index range scan on the live table, the
 * only thing the estimate does to it. */
static int copy_sample(PGconn *conn, const struct mig_bf_table *t, const char *copy, const char *columns,
                       long limit, char *err, size_t errlen)
{
    struct mig_str s = {0};
    mig_str_addf(&s, "INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM %s ORDER BY ", copy, columns,
                 columns, t->qname);
    for (size_t k = 0; k < t->npk; k++)
        mig_str_addf(&s, "%s%s", k ? ", " : "", t->pk[k]);
    mig_str_add(&s, " LIMIT $1::bigint");
    char num[32];
    snprintf(num, sizeof num, "%ld", limit);
    const char *v[1] = {num};
    PGresult *r = query(conn, mig_str_take(&s), 1, v, "copying the sample", err, errlen);
    PQclear(r);
    if (!r)
        return -1;
    /* hint bits and the visibility map as on a table autovacuum has seen */
    mig_str_addf(&s, "VACUUM (ANALYZE) %s", copy);
    return run(conn, mig_str_take(&s), "vacuuming the scratch copy", err, errlen);
}

static double scalar(PGconn *conn, char *sql, int n, const char *const *v, const char *doing, int *ok,
                     char *err, size_t errlen)
{
    PGresult *r = query(conn, sql, n, v, doing, err, errlen);
    double x = r && PQntuples(r) == 1 ? atof(PQgetvalue(r, 0, 0)) : 0.0;
    if (!r)
        *ok = 0;
    PQclear(r);
    return x;
}

/* reltuples when the table was analyzed; else count(*) when it is small,
 * else its size divided by the sample's bytes per row. */
static int table_rows(PGconn *conn, const struct mig_bf_table *t, const char *copy, double reltuples,
                      struct estimate_table *et, char *err, size_t errlen)
{
    int ok = 1;
    if (reltuples >= 0) {
        et->table_rows = reltuples;
        et->rows_source = "reltuples";
    } else if (et->table_bytes <= COUNT_LIMIT_BYTES) {
        struct mig_str s = {0};
        mig_str_addf(&s, "SELECT count(*) FROM %s", t->qname);
        et->table_rows = scalar(conn, mig_str_take(&s), 0, NULL, "counting the table's rows", &ok, err, errlen);
        et->rows_source = "count(*)";
    } else {
        const char *v[1] = {copy};
        double bytes = scalar(conn, strdup("SELECT pg_relation_size($1::regclass)"), 1, v,
                              "measuring the scratch copy", &ok, err, errlen);
        et->table_rows = bytes > 0 && et->sample_rows > 0 ? et->table_bytes / (bytes / (double)et->sample_rows)
                                                           : 0.0;
        et->rows_source = "size / sample row width";
    }
    /* a table that grew since it was analyzed holds at least the sample */
    if (et->table_rows < (double)et->sample_rows)
        et->table_rows = (double)et->sample_rows;
    return ok ? 0 : -1;
}

/* The backfill's own loader creates the checkpoint row in the scratch table. */
static int start_checkpoint(PGconn *conn, struct backfill *b, char *err, size_t errlen)
{
    if (backfill_load(conn, b, err, errlen) == 0 && !interrupted)
        return 0;
    return interrupted ? failed(conn, NULL, "creating the scratch checkpoint", err, errlen) : -1;
}

/* A first estimate on a table nobody had read lately came out many times
 * slower than the runs after it and than the backfill itself: the sample's
 * pages, the batch statement's plan, the `up` expressions' functions and
 * the triggers' first calls were all paid inside the timing. The copy is
 * read through once, and one batch runs and is rolled back, before the clock
 * starts; the timed batches start at the size that batch adapted to, as a
 * long backfill runs at its adapted size, not its first one. */
static int warm_sample(PGconn *conn, const struct estimate_report *rep, const struct mig_bf_table *scratch,
                       const char *progress, struct backfill *b, char *err, size_t errlen)
{
    struct mig_str s = {0};
    mig_str_addf(&s, "SELECT count(*), sum(pg_column_size(t)) FROM %s t", scratch->qname);
    if (run(conn, mig_str_take(&s), "reading the sample", err, errlen) != 0)
        return -1;
    mig_str_addf(&s, "SELECT count(*) FROM (SELECT 1 FROM %s ORDER BY ", scratch->qname);
    for (size_t k = 0; k < scratch->npk; k++)
        mig_str_addf(&s, "%s%s", k ? ", " : "", scratch->pk[k]);
    mig_str_add(&s, ") keys");
    if (run(conn, mig_str_take(&s), "reading the sample's keys", err, errlen) != 0)
        return -1;
    if (run(conn, strdup("BEGIN"), "warming the batch statement", err, errlen) != 0)
        return -1;
    struct backfill warm;
    backfill_init(&warm, scratch, rep->migration, &rep->cfg);
    warm.progress_table = progress;
    int rc = backfill_load(conn, &warm, err, errlen) == 0 && !interrupted ? backfill_step(conn, &warm, err, errlen)
                                                                          : -1;
    if (rc == 0 && warm.batches == 1) {
        b->batch_rows = warm.batch_rows;
        b->rate = warm.rate;
    }
    backfill_free(&warm);
    PGresult *r = PQexec(conn, "ROLLBACK");
    if (PQresultStatus(r) != PGRES_COMMAND_OK && rc == 0)
        rc = failed(conn, r, "rolling the warming batch back", err, errlen);
    PQclear(r);
    if (rc != 0 && interrupted)
        return failed(conn, NULL, "warming the batch statement", err, errlen);
    return rc;
}

/* The backfill's batches over the copy, as the engine runs them but for the
 * throttle sleeps, which are added up instead of slept. */
static int walk_sample(PGconn *conn, struct backfill *b, struct estimate_table *et, char *err, size_t errlen)
{
    int ok = 1;
    char lsn[64];
    PGresult *r = query(conn, strdup("SELECT pg_current_wal_insert_lsn()"), 0, NULL, "reading the WAL position",
                        err, errlen);
    if (!r)
        return -1;
    snprintf(lsn, sizeof lsn, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    double t0 = progress_mono_ms();
    while (!b->done && !interrupted) {
        if (backfill_step(conn, b, err, errlen) != 0)
            return interrupted ? failed(conn, NULL, "running a sample batch", err, errlen) : -1;
        et->sleep_ms += (double)backfill_sleep_ms(b);
        if (b->batches == 1) {
            et->first_rows = b->last_rows;
            et->first_ms = progress_mono_ms() - t0;
            et->first_sleep_ms = et->sleep_ms;
        }
    }
    et->sample_ms = progress_mono_ms() - t0;
    if (interrupted)
        return failed(conn, NULL, "running the sample batches", err, errlen);
    const char *v[1] = {lsn};
    et->wal_bytes = scalar(conn, strdup("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1::pg_lsn)"), 1, v,
                           "reading the WAL position", &ok, err, errlen);
    et->sample_rows = b->rows_done;
    et->sample_updated = b->rows_updated;
    et->batches = b->batches;
    et->last_batch_rows = b->batch_rows;
    return ok ? 0 : -1;
}

static json_t *operations_of(const struct mig_bf_table *t)
{
    json_t *ops = json_array();
    for (size_t i = 0; ops && i < t->nexprs; i++)
        json_array_append_new(ops, json_string(t->exprs[i].what));
    return ops;
}

static int estimate_table(PGconn *conn, struct estimate_report *rep, const struct migration *m, size_t i,
                          const struct mig_bf_table *t, struct estimate_table *et, char *err, size_t errlen)
{
    double reltuples = -1;
    char *columns = NULL, name[64];
    et->qname = strdup(t->qname);
    et->schema = strdup(t->schema);
    et->name = strdup(t->name);
    et->operations = operations_of(t);
    snprintf(name, sizeof name, "t%zu_%s", i, t->name);
    char *copy = scratch_qname(rep, name);
    struct mig_bf_table scratch = *t;
    scratch.schema = rep->scratch;
    scratch.name = name;
    scratch.qname = copy;
    struct backfill b;
    backfill_init(&b, &scratch, rep->migration, &rep->cfg);
    char *progress = scratch_qname(rep, "backfill_progress");
    b.progress_table = progress;
    int rc = !et->qname || !et->schema || !et->name || !et->operations || !copy || !progress ? -1 : 0;
    if (rc != 0)
        snprintf(err, errlen, "out of memory");
    if (rc == 0)
        rc = live_shape(conn, t, &reltuples, &columns, et, err, errlen);
    if (rc == 0)
        rc = create_copy(conn, t, copy, err, errlen);
    if (rc == 0)
        rc = copy_sample(conn, t, copy, columns, rep->sample_limit, err, errlen);
    if (rc == 0)
        rc = add_planned_indexes(conn, m, t, rep->scratch, name, err, errlen);
    if (rc == 0)
        rc = add_triggers(conn, rep, t, copy, err, errlen);
    if (rc == 0)
        rc = start_checkpoint(conn, &b, err, errlen);
    if (rc == 0)
        rc = warm_sample(conn, rep, &scratch, progress, &b, err, errlen);
    if (rc == 0)
        rc = walk_sample(conn, &b, et, err, errlen);
    if (rc == 0)
        rc = table_rows(conn, t, copy, reltuples, et, err, errlen);
    backfill_free(&b);
    free(progress);
    free(copy);
    free(columns);
    return rc;
}

/* The backfill session's settings (triggers stand aside, lock_timeout,
 * synchronous_commit off), and replica mode where permitted, as the engine. */
static int backfill_session(PGconn *conn, const struct estimate_report *rep, int want_replica, int *replica,
                            char *err, size_t errlen)
{
    char why[512];
    if (backfill_session_begin(conn, &rep->cfg, want_replica, replica, why, sizeof why) == 0 && !interrupted)
        return 0;
    if (interrupted)
        snprintf(err, errlen, "estimate interrupted while setting up the backfill session");
    else
        snprintf(err, errlen, "estimate: setting up the backfill session: %s", why[0] ? why : "no result");
    return -1;
}

int estimate_run(PGconn *conn, const struct migration *m, const struct mig_plan *p, long sample_rows,
                 struct estimate_report *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    err[0] = '\0';
    out->migration = strdup(m->name);
    out->sample_limit = sample_rows;
    out->cfg = m->backfill;
    snprintf(out->scratch, sizeof out->scratch, "pgtandem_estimate_%ld", (long)getpid());
    out->tables = p->nbf ? calloc(p->nbf, sizeof *out->tables) : NULL;
    if (!out->migration || (p->nbf && !out->tables)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (p->nbf == 0)
        return 0;
    struct signals sig;
    catch_signals(conn, &sig);
    int replica = 0;
    int rc = create_scratch(conn, out, err, errlen);
    if (rc == 0)
        rc = backfill_session(conn, out, backfill_replica_allowed(p), &replica, err, errlen);
    for (size_t i = 0; rc == 0 && i < p->nbf; i++) {
        rc = estimate_table(conn, out, m, i, &p->bf[i], &out->tables[i], err, errlen);
        out->ntables = i + 1;
    }
    detach_cancel();
    if (interrupted && rc == 0)
        rc = failed(conn, NULL, "measuring the tables", err, errlen);
    backfill_session_end(conn, replica);
    if (drop_scratch(conn, out, err, errlen) != 0)
        rc = -1;
    else if (rc != 0)
        snprintf(err + strlen(err), errlen - strlen(err), "; the scratch schema %s was dropped", out->scratch);
    restore_signals(&sig);
    return rc;
}

void estimate_free(struct estimate_report *r)
{
    for (size_t i = 0; r->tables && i < r->ntables; i++) {
        free(r->tables[i].qname);
        free(r->tables[i].schema);
        free(r->tables[i].name);
        json_decref(r->tables[i].operations);
    }
    free(r->tables);
    free(r->migration);
    memset(r, 0, sizeof *r);
}

/* ---- extrapolation and output --------------------------------------------- */

struct projection {
    double rows_per_s;          /* batches alone */
    double throttled_rows_per_s;/* with the throttle's sleeps */
    double eta_s, wal_per_row, wal_bytes, dead_tuples;
};

static struct projection project(const struct estimate_table *t)
{
    struct projection p = {0};
    if (t->sample_rows <= 0 || t->sample_ms <= 0)
        return p;
    double n = (double)t->sample_rows;
    /* The first batch pays for what a session meets once per table (catalog
     * caches, the statement's plan): the rate comes from the batches after
     * it, and the first batch counts once in the duration. */
    double fixed_ms = 0, rows = n, ms = t->sample_ms, sleep = t->sleep_ms;
    if (t->batches >= 3 && t->first_rows > 0 && t->first_ms < t->sample_ms) {
        fixed_ms = t->first_ms + t->first_sleep_ms;
        rows -= (double)t->first_rows;
        ms -= t->first_ms;
        sleep -= t->first_sleep_ms;
    }
    p.rows_per_s = rows / (ms / 1000.0);
    p.throttled_rows_per_s = rows / ((ms + sleep) / 1000.0);
    p.eta_s = fixed_ms / 1000.0 + (t->table_rows - (fixed_ms > 0 ? (double)t->first_rows : 0.0))
                                  / p.throttled_rows_per_s;
    p.wal_per_row = t->wal_bytes / n;
    p.wal_bytes = p.wal_per_row * t->table_rows;
    p.dead_tuples = t->table_rows * (double)t->sample_updated / n;
    return p;
}

static void human_bytes(double b, char *out, size_t n)
{
    static const char *const unit[] = {"B", "kB", "MB", "GB", "TB"};
    int u = 0;
    while (b >= 1024.0 && u < 4) {
        b /= 1024.0;
        u++;
    }
    snprintf(out, n, u ? "%.1f %s" : "%.0f %s", b, unit[u]);
}

static void human_duration(double s, char *out, size_t n)
{
    if (s < 120)
        snprintf(out, n, "%.1f s", s);
    else if (s < 7200)
        snprintf(out, n, "%.1f min", s / 60.0);
    else
        snprintf(out, n, "%.1f h", s / 3600.0);
}

static void print_throttle(const struct mig_backfill_settings *c, FILE *out)
{
    fprintf(out, "-- throttle as configured: first batch %ld rows, adaptive to %ld ms per batch (%ld..%ld rows), ",
            c->batch_rows, c->target_ms, c->min_rows, c->max_rows);
    if (c->max_rows_per_sec > 0)
        fprintf(out, "at most %ld rows/s, ", c->max_rows_per_sec);
    else
        fprintf(out, "no rows/s cap, ");
    fprintf(out, "sleep ratio %.2f\n", c->sleep_ratio);
}

void estimate_print(const struct estimate_report *r, FILE *out)
{
    fprintf(out, "\n-- == estimate (sample of up to %ld rows per table, copied to schema %s and dropped) ==\n",
            r->sample_limit, r->scratch);
    if (r->ntables == 0) {
        fprintf(out, "-- (nothing to backfill)\n");
        return;
    }
    print_throttle(&r->cfg, out);
    for (size_t i = 0; i < r->ntables; i++) {
        const struct estimate_table *t = &r->tables[i];
        struct projection p = project(t);
        char wal[32], per[32], eta[32];
        human_bytes(p.wal_bytes, wal, sizeof wal);
        human_bytes(p.wal_per_row, per, sizeof per);
        human_duration(p.eta_s, eta, sizeof eta);
        fprintf(out, "-- %s (", t->qname);
        for (size_t k = 0; k < json_array_size(t->operations); k++)
            fprintf(out, "%s%s", k ? ", " : "", json_string_value(json_array_get(t->operations, k)));
        fprintf(out, "): %.0f rows (from %s)\n", t->table_rows, t->rows_source);
        fprintf(out, "--   sample: %lld rows (%lld updated) in %lld batches, %.0f ms: %.0f rows/s, %s of WAL per row\n",
                t->sample_rows, t->sample_updated, t->batches, t->sample_ms, p.rows_per_s, per);
        fprintf(out, "--   expected backfill: %s at %.0f rows/s with the throttle, %s of WAL, %.0f dead tuples "
                "left for vacuum\n", eta, p.throttled_rows_per_s, wal, p.dead_tuples);
    }
}

json_t *estimate_to_json(const struct estimate_report *r)
{
    json_t *tables = json_array();
    double eta = 0, wal = 0, dead = 0;
    for (size_t i = 0; i < r->ntables; i++) {
        const struct estimate_table *t = &r->tables[i];
        struct projection p = project(t);
        eta += p.eta_s;
        wal += p.wal_bytes;
        dead += p.dead_tuples;
        json_array_append_new(tables, json_pack(
            "{s:s, s:s, s:O, s:f, s:s, s:f, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}",
            "schema", t->schema, "table", t->name, "operations", t->operations, "table_rows", t->table_rows,
            "rows_source", t->rows_source, "table_bytes", t->table_bytes,
            "sample_rows", (json_int_t)t->sample_rows, "sample_rows_updated", (json_int_t)t->sample_updated,
            "sample_batches", (json_int_t)t->batches, "last_batch_rows", (json_int_t)t->last_batch_rows,
            "sample_ms", t->sample_ms, "first_batch_ms", t->first_ms, "sample_wal_bytes", t->wal_bytes,
            "rows_per_s", p.rows_per_s,
            "throttled_rows_per_s", p.throttled_rows_per_s, "wal_bytes_per_row", p.wal_per_row,
            "eta_s", p.eta_s, "wal_bytes", p.wal_bytes, "dead_tuples", p.dead_tuples,
            "throttle_sleep_ms", t->sleep_ms));
    }
    const struct mig_backfill_settings *c = &r->cfg;
    return json_pack("{s:s, s:s, s:I, s:{s:I, s:I, s:I, s:I, s:I, s:f}, s:o, s:{s:f, s:f, s:f}}",
                     "migration", r->migration, "scratch_schema", r->scratch, "sample_limit",
                     (json_int_t)r->sample_limit, "throttle", "batch_rows", (json_int_t)c->batch_rows,
                     "min_rows", (json_int_t)c->min_rows, "max_rows", (json_int_t)c->max_rows,
                     "target_ms", (json_int_t)c->target_ms, "max_rows_per_sec", (json_int_t)c->max_rows_per_sec,
                     "sleep_ratio", c->sleep_ratio, "tables", tables, "total", "eta_s", eta, "wal_bytes", wal,
                     "dead_tuples", dead);
}

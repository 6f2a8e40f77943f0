/* Backfill batches: builds the one statement per batch (select the next key
 * range, UPDATE the rows in it that still need the new value, advance the
 * checkpoint — all data-modifying CTEs of a single statement, so the
 * checkpoint commits with its batch) and adapts the batch size to a target
 * duration the way pt-online-schema-change does (weighted rows/ms average). */
#include "backfill.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "migration_sql.h"

#define RATE_WEIGHT 0.75          /* weight of the history in the rows/ms average */
#define MAX_GROWTH 2.0            /* never more than double the batch at once */

void backfill_init(struct backfill *b, const struct mig_bf_table *t, const char *migration,
                   const struct mig_backfill_settings *cfg)
{
    memset(b, 0, sizeof *b);
    b->table = t;
    b->migration = migration;
    b->progress_table = "pgtandem.backfill_progress";
    b->cfg = *cfg;
    b->batch_rows = cfg->batch_rows;
    b->est_total = b->est_planned = t->est_rows;
    b->throttle = "none";
}

static void forget_last_key(struct backfill *b)
{
    for (int i = 0; i < BACKFILL_MAX_KEY; i++) {
        free(b->last_key[i]);
        b->last_key[i] = NULL;
    }
}

void backfill_free(struct backfill *b)
{
    forget_last_key(b);
    free(b->range_lo);
    free(b->range_hi);
    b->range_lo = b->range_hi = NULL;
}

/* Splits Postgres's text[] output ({a,"b c"}) into its elements. Key values
 * come back from the server, quoted by array_out's rules. */
static int parse_text_array(const char *s, char **out, int max)
{
    int n = 0;
    if (*s++ != '{')
        return -1;
    while (*s && *s != '}' && n < max) {
        struct mig_str v = {0};
        mig_str_add(&v, "");
        if (*s == '"') {
            for (s++; *s && *s != '"'; s++) {
                if (*s == '\\' && s[1])
                    s++;
                char c[2] = {*s, 0};
                mig_str_add(&v, c);
            }
            if (*s == '"')
                s++;
        } else {
            for (; *s && *s != ',' && *s != '}'; s++) {
                char c[2] = {*s, 0};
                mig_str_add(&v, c);
            }
        }
        out[n++] = mig_str_take(&v);
        if (*s == ',')
            s++;
    }
    return n;
}

int backfill_apply_checkpoint_row(struct backfill *b, const PGresult *r, int row, int first, char *err,
                                  size_t errlen)
{
    forget_last_key(b);
    b->have_last = !PQgetisnull(r, row, first);
    if (b->have_last &&
        parse_text_array(PQgetvalue(r, row, first), b->last_key, BACKFILL_MAX_KEY) != (int)b->table->npk) {
        snprintf(err, errlen, "the checkpoint of %s has a malformed key", b->table->qname);
        return -1;
    }
    b->rows_done = atoll(PQgetvalue(r, row, first + 1));
    b->rows_updated = atoll(PQgetvalue(r, row, first + 2));
    b->batches = atoll(PQgetvalue(r, row, first + 3));
    b->done = PQgetvalue(r, row, first + 4)[0] == 't';
    b->paused = PQgetvalue(r, row, first + 5)[0] == 't';
    if (!PQgetisnull(r, row, first + 6))
        b->est_total = atof(PQgetvalue(r, row, first + 6));
    return 0;
}

int backfill_load(PGconn *conn, struct backfill *b, char *err, size_t errlen)
{
    char est[32];
    snprintf(est, sizeof est, "%.0f", b->table->est_rows);
    const char *params[4] = {b->migration, b->table->schema, b->table->name, est};
    /* A data-modifying CTE's rows are invisible to the rest of its
     * statement, so creating and reading the checkpoint are two statements. */
    struct mig_str s = {0};
    mig_str_addf(&s, "INSERT INTO %s (migration, schema_name, table_name, est_rows)"
                 " VALUES ($1, $2, $3, $4::float8) ON CONFLICT DO NOTHING", b->progress_table);
    char *create = mig_str_take(&s);
    mig_str_addf(&s, "SELECT last_key, rows_done, rows_updated, batches, done, paused, est_rows"
                 "  FROM %s WHERE migration = $1 AND schema_name = $2 AND table_name = $3", b->progress_table);
    char *load = mig_str_take(&s);
    PGresult *r = create && load ? PQexecParams(conn, create, 4, NULL, params, NULL, NULL, 0) : NULL;
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    r = ok ? PQexecParams(conn, load, 3, NULL, params, NULL, NULL, 0) : NULL;
    int rc = -1;
    if (!r)
        snprintf(err, errlen, "loading the backfill checkpoint of %s: %s", b->table->qname,
                 create && load ? PQerrorMessage(conn) : "out of memory");
    else if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        snprintf(err, errlen, "loading the backfill checkpoint of %s: %s", b->table->qname,
                 PQresultStatus(r) == PGRES_TUPLES_OK ? "checkpoint row missing" : PQresultErrorMessage(r));
    else
        rc = backfill_apply_checkpoint_row(b, r, 0, 0, err, errlen);
    PQclear(r);
    free(create);
    free(load);
    return rc;
}

static void key_list(struct mig_str *s, const struct mig_bf_table *t, const char *prefix, const char *suffix)
{
    for (size_t k = 0; k < t->npk; k++)
        mig_str_addf(s, "%s%s%s%s", k ? ", " : "", prefix, t->pk[k], suffix);
}

/* The checkpoint's key values are parameters $first, $first + 1, ... */
static void key_params(struct mig_str *s, const struct mig_bf_table *t, size_t first)
{
    for (size_t k = 0; k < t->npk; k++)
        mig_str_addf(s, "%s$%zu::%s", k ? ", " : "", k + first, t->pk_types[k]);
}

/* Where a statement's window parameters sit, from $first on: the
 * checkpoint's key values, or the range's lower bound while the range has
 * no checkpoint yet, then the range's upper bound. 0: absent. */
struct window {
    size_t last, lo, hi, next;
};

static struct window window_of(const struct backfill *b, size_t first)
{
    struct window w = {0, 0, 0, first};
    if (b->have_last) {
        w.last = w.next;
        w.next += b->table->npk;
    } else if (b->range_lo) {
        w.lo = w.next++;
    }
    if (b->range_hi)
        w.hi = w.next++;
    return w;
}

/* The rows a batch may take: strictly after the checkpoint (or the range's
 * lower bound), within the range. The checkpoint lies inside the range, so
 * it replaces the lower bound. */
static void in_window(struct mig_str *s, const struct backfill *b, const struct window *w, const char *alias)
{
    const struct mig_bf_table *t = b->table;
    const char *and = "";
    if (w->last) {
        mig_str_add(s, "(");
        key_list(s, t, alias, "");
        mig_str_add(s, ") > (");
        key_params(s, t, w->last);
        mig_str_add(s, ")");
        and = " AND ";
    } else if (w->lo) {
        mig_str_addf(s, "%s%s > $%zu::%s", alias, t->pk[0], w->lo, t->pk_types[0]);
        and = " AND ";
    }
    if (w->hi)
        mig_str_addf(s, "%s%s%s <= $%zu::%s", and, alias, t->pk[0], w->hi, t->pk_types[0]);
    else if (!*and)
        mig_str_add(s, "true");
}

/* The parameters of window_of(b, first) into values[first - 1 ...]. */
static size_t window_values(const struct backfill *b, const struct window *w, const char **values)
{
    size_t n = 0;
    for (size_t k = 0; w->last && k < b->table->npk; k++)
        values[n++] = b->last_key[k];
    if (w->lo)
        values[n++] = b->range_lo;
    if (w->hi)
        values[n++] = b->range_hi;
    return n;
}

/* The name a batch gives the table's row: the table's own name, so that an
 * "up" naming a column by its table ("t"."col", as an UPDATE's value with
 * a correlated subquery does) reads the row being written, as the trigger
 * does (plan_trigger.c). `t` when the name is one of the statement's own
 * (its CTEs) or too long. The text ends with the dot. */
struct row_alias {
    char dot[2 * 64 + 8];
};

static struct row_alias alias_of(const struct mig_bf_table *t)
{
    static const char *const taken[] = {"edge", "bounds", "n", "batch", "lk", "upd", "cp", NULL};
    struct row_alias a;
    snprintf(a.dot, sizeof a.dot, "t.");
    for (int i = 0; taken[i]; i++)
        if (!strcmp(t->name, taken[i]))
            return a;
    char *q = mig_quote_ident(t->name);
    if (q && strlen(q) + 2 <= sizeof a.dot)
        snprintf(a.dot, sizeof a.dot, "%s.", q);
    free(q);
    return a;
}

/* "AS name" for the alias (its text without the dot). */
static void add_as(struct mig_str *s, const struct row_alias *a)
{
    mig_str_addf(s, " AS %.*s", (int)(strlen(a->dot) - 1), a->dot);
}

/* A batch's window starts at $6: $1 to $5 are the migration, schema,
 * table, the rows to take and the range. */
#define BATCH_WINDOW_FIRST 6

/* One statement: `batch` picks the next keys, `upd` sets the new columns of
 * the rows among them that still need it (a single-column key uses a range so
 * the UPDATE is one index range scan), `cp` advances the checkpoint. */
/* Single-column key: the batch's upper edge is found by skipping n-1 index
 * entries (an index-only scan, nothing materialised); the last, partial
 * batch falls back to the window's last key (ORDER BY ... DESC LIMIT 1,
 * not max(): uuid and other key types have no max). */
static void single_key_bounds(struct mig_str *s, const struct backfill *b, const struct window *w)
{
    const struct mig_bf_table *t = b->table;
    const char *k = t->pk[0];
    mig_str_addf(s, "WITH edge AS (SELECT %s FROM %s WHERE ", k, t->qname);
    in_window(s, b, w, "");
    mig_str_addf(s, " ORDER BY %s OFFSET $4::int - 1 LIMIT 1), bounds AS (SELECT coalesce((SELECT %s FROM edge),"
                 " (SELECT %s FROM %s WHERE ", k, k, k, t->qname);
    in_window(s, b, w, "");
    mig_str_addf(s, " ORDER BY %s DESC LIMIT 1)) AS ", k);
    mig_str_add(s, k);
    mig_str_addf(s, ", CASE WHEN EXISTS (SELECT 1 FROM edge) THEN $4::bigint ELSE (SELECT count(*) FROM %s WHERE ",
                 t->qname);
    in_window(s, b, w, "");
    mig_str_add(s, ") END AS rows), n AS (SELECT rows FROM bounds)");
}

/* Composite key: materialise the next n keys and take the last. */
static void composite_key_bounds(struct mig_str *s, const struct backfill *b, const struct window *w)
{
    const struct mig_bf_table *t = b->table;
    mig_str_add(s, "WITH batch AS (SELECT ");
    key_list(s, t, "", "");
    mig_str_addf(s, " FROM %s WHERE ", t->qname);
    in_window(s, b, w, "");
    mig_str_add(s, " ORDER BY ");
    key_list(s, t, "", "");
    mig_str_add(s, " LIMIT $4::int), bounds AS (SELECT ");
    key_list(s, t, "", "");
    mig_str_add(s, " FROM batch ORDER BY ");
    key_list(s, t, "", " DESC");
    mig_str_add(s, " LIMIT 1), n AS (SELECT count(*) AS rows FROM batch)");
}

/* A single-column key's batch: the window up to the bounds' key, the row
 * under the alias `a`. */
static void single_key_batch(struct mig_str *s, const struct backfill *b, const struct window *w,
                             const struct row_alias *a)
{
    const char *k = b->table->pk[0];
    in_window(s, b, w, a->dot);
    mig_str_addf(s, " AND %s%s <= (SELECT %s FROM bounds)", a->dot, k, k);
}

/* `lk` locks the rows of the batch that still need writing, NOWAIT, before
 * any is written: a batch that met a row an app transaction holds while it
 * held rows it had written could close a cycle with that transaction (which
 * locks rows in its own order), and Postgres would abort whichever waited a
 * deadlock_timeout first, often the app. Failing at once with 55P03 while
 * holding nothing, the batch is retried smaller after a pause instead
 * (backfill_lock_timeout). NO KEY UPDATE: what an UPDATE of non-key columns
 * takes, so foreign key checks (KEY SHARE) never stop a batch; a DELETE
 * needs the full lock. `upd` then writes the rows of the window that still
 * need it, all of them locked: under the statement's one snapshot a row
 * `lk` did not lock is one whose newest version no longer needs writing
 * (and a newer version it did meet, it locked), so the write never waits
 * for a row either. */
static void lock_rows(struct mig_str *s, const struct backfill *b, const struct window *w,
                      const struct row_alias *a)
{
    const struct mig_bf_table *t = b->table;
    mig_str_add(s, ", lk AS MATERIALIZED (SELECT ");
    key_list(s, t, a->dot, "");
    mig_str_addf(s, " FROM %s", t->qname);
    add_as(s, a);
    mig_str_add(s, " WHERE ");
    if (t->npk == 1) {
        single_key_batch(s, b, w, a);
    } else {
        mig_str_add(s, "(");
        key_list(s, t, a->dot, "");
        mig_str_add(s, ") IN (SELECT ");
        key_list(s, t, "", "");
        mig_str_add(s, " FROM batch)");
    }
    mig_str_addf(s, " AND (%s) FOR %s OF %.*s NOWAIT)", t->pending, t->deletes ? "UPDATE" : "NO KEY UPDATE",
                 (int)(strlen(a->dot) - 1), a->dot);
}

/* One statement: the bounds CTEs pick the next keys of the range, `lk`
 * locks the rows among them that still need the new columns, `upd` sets
 * them (a single-column key gives one index range scan), `cp` advances the
 * range's checkpoint. An empty remainder of a range leaves its checkpoint's
 * key. */
char *backfill_batch_sql(const struct backfill *b)
{
    const struct mig_bf_table *t = b->table;
    struct window w = window_of(b, BATCH_WINDOW_FIRST);
    struct mig_str s = {0};
    /* first: pg_stat_activity keeps a statement's first 1 kB only */
    mig_str_add(&s, "/* pgtandem backfill batch */ ");
    if (t->npk == 1)
        single_key_bounds(&s, b, &w);
    else
        composite_key_bounds(&s, b, &w);
    struct row_alias a = alias_of(t);
    lock_rows(&s, b, &w, &a);
    mig_str_addf(&s, ", upd AS (%s %s", t->deletes ? "DELETE FROM" : "UPDATE", t->qname);
    add_as(&s, &a);
    if (!t->deletes)
        mig_str_addf(&s, " SET %s", t->set_list);
    if (t->npk == 1) {
        mig_str_add(&s, " WHERE ");
        single_key_batch(&s, b, &w, &a);
    } else {
        mig_str_addf(&s, " %s batch WHERE (", t->deletes ? "USING" : "FROM");
        key_list(&s, t, a.dot, "");
        mig_str_add(&s, ") = (");
        key_list(&s, t, "batch.", "");
        mig_str_add(&s, ")");
    }
    /* the count: a one-time filter, so `lk` locks every row before the scan
     * writes one (count, not EXISTS, which would stop at lk's first row);
     * writing by the window again, not by joining lk, costs a third less */
    mig_str_addf(&s, " AND (%s) AND (SELECT count(*) FROM lk) > 0 RETURNING 1),", t->pending);
    mig_str_addf(&s, " cp AS (UPDATE %s SET"
                 " last_key = coalesce((SELECT ARRAY[", b->progress_table);
    key_list(&s, t, "", "::text");
    mig_str_add(&s, "] FROM bounds");
    if (t->npk == 1)
        mig_str_addf(&s, " WHERE %s IS NOT NULL", t->pk[0]);
    mig_str_add(&s, "), last_key),"
                " rows_done = rows_done + (SELECT rows FROM n),"
                " rows_updated = rows_updated + (SELECT count(*) FROM upd),"
                " batches = batches + 1, done = (SELECT rows FROM n) < $4::int, updated_at = now()"
                " WHERE migration = $1 AND schema_name = $2 AND table_name = $3 AND range_no = $5::int"
                " RETURNING last_key, rows_done, rows_updated, done, paused)"
                " SELECT (SELECT rows FROM n), last_key, rows_done, rows_updated, done, paused FROM cp");
    return mig_str_take(&s);
}

int backfill_batch_params(const struct backfill *b, const char **values, char *numbuf, size_t numlen)
{
    size_t half = numlen / 2;
    snprintf(numbuf, half, "%ld", b->batch_rows);
    snprintf(numbuf + half, numlen - half, "%d", b->range_no);
    values[0] = b->migration;
    values[1] = b->table->schema;
    values[2] = b->table->name;
    values[3] = numbuf;
    values[4] = numbuf + half;
    struct window w = window_of(b, BATCH_WINDOW_FIRST);
    return BATCH_WINDOW_FIRST - 1 + (int)window_values(b, &w, values + BATCH_WINDOW_FIRST - 1);
}

/* pt-online-schema-change's chunk sizing: keep a weighted average of the
 * observed rows/ms and size the next batch to take target_ms. The batch
 * is sized by the slower of that average and the last batch's own rate:
 * the average alone keeps three quarters of its memory of a fast past, so
 * after a batch that slowed down (another worker extending the table, a
 * busy core) the next one would still be sized for the old pace and run
 * long. Shrinking at once and growing back through the average keeps
 * batches near the target, and the longest of them short. */
static void adapt_batch_size(struct backfill *b, long rows, double ms)
{
    if (rows <= 0 || ms <= 0.0)
        return;
    double observed = (double)rows / ms;
    b->rate = b->rate > 0.0 ? RATE_WEIGHT * b->rate + (1.0 - RATE_WEIGHT) * observed : observed;
    double pace = observed < b->rate ? observed : b->rate;
    double next = pace * (double)b->cfg.target_ms;
    if (next > (double)b->batch_rows * MAX_GROWTH)
        next = (double)b->batch_rows * MAX_GROWTH;
    if (next < (double)b->cfg.min_rows)
        next = (double)b->cfg.min_rows;
    if (next > (double)b->cfg.max_rows)
        next = (double)b->cfg.max_rows;
    b->batch_rows = (long)next;
}

long backfill_uncapped_rows(const struct backfill *b)
{
    double pace = b->rate * (double)b->cfg.target_ms;
    if (b->rate <= 0.0 || pace >= (double)b->cfg.max_rows)
        return b->cfg.max_rows;
    return pace > (double)b->cfg.min_rows ? (long)pace : b->cfg.min_rows;
}

int backfill_apply_result(struct backfill *b, const PGresult *r, double elapsed_ms, char *err,
                          size_t errlen)
{
    if (PQntuples(r) != 1) {
        snprintf(err, errlen, "the checkpoint row of %s is missing", b->table->qname);
        return -1;
    }
    long rows = atol(PQgetvalue(r, 0, 0));
    forget_last_key(b);
    b->have_last = !PQgetisnull(r, 0, 1);
    if (b->have_last)
        parse_text_array(PQgetvalue(r, 0, 1), b->last_key, BACKFILL_MAX_KEY);
    b->rows_done = atoll(PQgetvalue(r, 0, 2));
    b->rows_updated = atoll(PQgetvalue(r, 0, 3));
    b->done = PQgetvalue(r, 0, 4)[0] == 't';
    b->paused = PQgetvalue(r, 0, 5)[0] == 't';
    b->batches++;
    b->last_rows = rows;
    b->last_ms = elapsed_ms;
    b->total_ms += elapsed_ms;
    if (elapsed_ms > b->max_ms)
        b->max_ms = elapsed_ms;
    if (b->rows_done > b->est_total)
        b->est_total = (double)b->rows_done;
    adapt_batch_size(b, rows, elapsed_ms);
    b->lock_retries = 0;
    return 0;
}

void backfill_lock_timeout(struct backfill *b)
{
    b->lock_timeouts++;
    b->lock_retries++;
    b->batch_rows = b->batch_rows / 2 > b->cfg.min_rows ? b->batch_rows / 2 : b->cfg.min_rows;
    b->throttle = "lock-wait";
}

long backfill_sleep_ms(struct backfill *b)
{
    if (b->paused) {
        b->throttle = "paused";
        return 1000;
    }
    double sleep = b->last_ms * b->cfg.sleep_ratio;
    const char *why = sleep > 0.0 ? "sleep-ratio" : "none";
    if (b->cfg.max_rows_per_sec > 0) {
        double min_ms = (double)b->batch_rows * 1000.0 / (double)b->cfg.max_rows_per_sec;
        if (min_ms - b->last_ms > sleep) {
            sleep = min_ms - b->last_ms;
            why = "max-rows";
        }
    }
    /* a row held by an app transaction: the batch gave up at once (NOWAIT),
     * so without a pause it would spin on the row; 10 ms, doubling up to
     * lock_timeout_ms while the row stays held */
    if (b->lock_retries > 0) {
        int k = b->lock_retries - 1 < 16 ? b->lock_retries - 1 : 16;
        double backoff = fmin(10.0 * (double)(1L << k), (double)b->cfg.lock_timeout_ms);
        if (backoff > sleep) {
            sleep = backoff;
            why = "lock-wait";
        }
    }
    if (strcmp(b->throttle, "lock-wait") != 0 || sleep > 0.0)
        b->throttle = why;
    return (long)ceil(sleep);
}

/* synchronous_commit off: a batch and its checkpoint commit together, so a
 * crash can only lose both, and the resume redoes them; whatever is decided
 * on a batch's result (the phase moving on, the contract) commits later in a
 * session with the server's own synchronous_commit (on by default), and that
 * flush covers the WAL of every batch before it. So the backfill need not wait for a WAL flush (or Neon's safekeepers)
 * once per batch. */
static char *session_sql(const struct mig_backfill_settings *cfg)
{
    struct mig_str s = {0};
    mig_str_addf(&s, "SET " MIG_BACKFILL_GUC " = 'on'; SET lock_timeout = '%ldms'; SET synchronous_commit = off",
                 cfg->lock_timeout_ms);
    return mig_str_take(&s);
}

char *backfill_session_sql(const struct backfill *b)
{
    return session_sql(&b->cfg);
}

/* Several statements, no parameters; err gets the server's message. */
static int exec_script(PGconn *conn, const char *sql, char *err, size_t errlen)
{
    PGresult *r = PQexec(conn, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok && err) {
        snprintf(err, errlen, "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(conn));
        size_t n = strlen(err);
        while (n > 0 && (err[n - 1] == '\n' || err[n - 1] == ' '))
            err[--n] = '\0';
    }
    PQclear(r);
    return ok ? 0 : -1;
}

/* Where allowed (superuser), replica mode skips every ordinary trigger
 * without even evaluating its WHEN clause; elsewhere (e.g. Neon) the
 * pgtandem.backfill setting and the triggers' WHEN clause do the same, so
 * a refused SET only leaves *replica at 0. */
int backfill_replica_allowed(const struct mig_plan *plan)
{
    for (size_t i = 0; plan && i < plan->nbf; i++)
        if (plan->bf[i].data)
            return 0;
    return 1;
}

int backfill_session_begin(PGconn *conn, const struct mig_backfill_settings *cfg, int want_replica, int *replica,
                           char *err, size_t errlen)
{
    *replica = 0;
    char *sql = session_sql(cfg);
    if (!sql) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = exec_script(conn, sql, err, errlen);
    free(sql);
    if (rc == 0 && want_replica)
        *replica = exec_script(conn, "SET session_replication_role = replica", NULL, 0) == 0;
    return rc;
}

/* session_replication_role apart: a refused RESET of it (a non-superuser)
 * would undo the other RESETs of the same implicit transaction. */
void backfill_session_end(PGconn *conn, int replica)
{
    exec_script(conn, "RESET " MIG_BACKFILL_GUC "; RESET lock_timeout; RESET synchronous_commit", NULL, 0);
    if (replica)
        exec_script(conn, "RESET session_replication_role", NULL, 0);
}

int backfill_step(PGconn *conn, struct backfill *b, char *err, size_t errlen)
{
    char *sql = backfill_batch_sql(b);
    if (!sql) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    const char *values[BACKFILL_MAX_PARAMS];
    char num[64];
    int n = backfill_batch_params(b, values, num, sizeof num);
    double t0 = clock_now_ms();
    PGresult *r = PQexecParams(conn, sql, n, NULL, values, NULL, NULL, 0);
    double elapsed = clock_now_ms() - t0;
    free(sql);
    int rc = 0;
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        rc = backfill_apply_result(b, r, elapsed, err, errlen);
    } else {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (state && strcmp(state, "55P03") == 0) {
            backfill_lock_timeout(b);
        } else {
            char pg_error[1024];
            snprintf(pg_error, sizeof pg_error, "%s", PQresultErrorMessage(r));
            size_t n = strlen(pg_error);
            while (n > 0 && (pg_error[n - 1] == '\n' || pg_error[n - 1] == ' '))
                pg_error[--n] = '\0';
            PQclear(r);
            r = NULL;
            backfill_describe_failure(conn, b, pg_error, err, errlen);
            rc = -1;
        }
    }
    PQclear(r);
    return rc;
}

/* ---- naming the row a failed batch stumbled on ----------------------------- */

/* `select_list` over rows [OFFSET, OFFSET + LIMIT) of the failed batch, in
 * key order in its window, as the batch's UPDATE saw them (under alias_of's name). The
 * window's parameters come first, then LIMIT and OFFSET. */
static char *slice_sql(const struct backfill *b, const char *select_list)
{
    const struct mig_bf_table *t = b->table;
    struct window w = window_of(b, 1);
    struct mig_str s = {0};
    mig_str_addf(&s, "SELECT %s FROM (SELECT * FROM %s WHERE ", select_list, t->qname);
    in_window(&s, b, &w, "");
    mig_str_add(&s, " ORDER BY ");
    key_list(&s, t, "", "");
    mig_str_addf(&s, " LIMIT $%zu::bigint OFFSET $%zu::bigint)", w.next, w.next + 1);
    struct row_alias a = alias_of(t);
    add_as(&s, &a);
    return mig_str_take(&s);
}

static PGresult *run_slice(PGconn *conn, const struct backfill *b, const char *sql, long long offset,
                           long long limit)
{
    const char *values[BACKFILL_MAX_PARAMS];
    char lim[32], off[32];
    struct window w = window_of(b, 1);
    size_t n = window_values(b, &w, values);
    snprintf(lim, sizeof lim, "%lld", limit);
    snprintf(off, sizeof off, "%lld", offset);
    values[n] = lim;
    values[n + 1] = off;
    return PQexecParams(conn, sql, (int)n + 2, NULL, values, NULL, NULL, 0);
}

/* Evaluates an expression over a slice the way the batch does (only where
 * the row still needs it). Returns 1 when it fails there, with Postgres's
 * message, else 0. */
static int expression_fails(PGconn *conn, const struct backfill *b, const char *sql, long long offset,
                            long long limit, char *msg, size_t msglen)
{
    PGresult *r = run_slice(conn, b, sql, offset, limit);
    int rc = 0;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        snprintf(msg, msglen, "%s", primary ? primary : PQresultErrorMessage(r));
        rc = 1;
    }
    PQclear(r);
    return rc;
}

/* ("k1", "k2")=(v1, v2) of the row at offset, or "" when it cannot be read. */
static void key_at(PGconn *conn, const struct backfill *b, long long offset, char *out, size_t outlen)
{
    const struct mig_bf_table *t = b->table;
    struct mig_str sel = {0};
    mig_str_add(&sel, "concat_ws(', ', ");
    struct row_alias a = alias_of(t);
    key_list(&sel, t, a.dot, "::text");
    mig_str_add(&sel, ")");
    char *list = mig_str_take(&sel);
    char *sql = list ? slice_sql(b, list) : NULL;
    PGresult *r = sql ? run_slice(conn, b, sql, offset, 1) : NULL;
    out[0] = '\0';
    if (r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        struct mig_str k = {0};
        mig_str_add(&k, "(");
        key_list(&k, t, "", "");
        mig_str_addf(&k, ")=(%s)", PQgetvalue(r, 0, 0));
        char *text = mig_str_take(&k);
        snprintf(out, outlen, "%s", text ? text : "");
        free(text);
    }
    PQclear(r);
    free(sql);
    free(list);
}

/* Bisects the failed batch for the first row on which x fails; returns its
 * offset, or -1 when x does not fail on this batch. */
static long long first_failing_row(PGconn *conn, const struct backfill *b, const struct mig_bf_expr *x,
                                   char *msg, size_t msglen)
{
    struct mig_str sel = {0};
    mig_str_addf(&sel, "count(CASE WHEN %s THEN (%s) END)", x->pending, x->up);
    char *list = mig_str_take(&sel);
    char *sql = list ? slice_sql(b, list) : NULL;
    free(list);
    if (!sql)
        return -1;
    long long lo = 0, len = b->batch_rows > 0 ? b->batch_rows : 1;
    long long found = -1;
    if (expression_fails(conn, b, sql, lo, len, msg, msglen) == 1) {
        while (len > 1) {
            long long half = len / 2;
            if (expression_fails(conn, b, sql, lo, half, msg, msglen) == 1) {
                len = half;
            } else {
                lo += half;
                len -= half;
            }
        }
        /* the message of the row itself, not of a slice that contained it */
        if (expression_fails(conn, b, sql, lo, 1, msg, msglen) == 1)
            found = lo;
    }
    free(sql);
    return found;
}

/* A batch failed on something else than a lock: find the row and the `up`
 * expression behind it, with small read-only queries over the batch's key
 * range (about log2(batch rows) of them, only ever after a failure). */
void backfill_describe_failure(PGconn *conn, const struct backfill *b, const char *pg_error, char *out,
                               size_t outlen)
{
    const struct mig_bf_table *t = b->table;
    char msg[512], key[512];
    /* a lost connection fails every query: bisecting would blame row 0 */
    for (size_t i = 0; PQstatus(conn) == CONNECTION_OK && i < t->nexprs; i++) {
        const struct mig_bf_expr *x = &t->exprs[i];
        long long at = first_failing_row(conn, b, x, msg, sizeof msg);
        if (at < 0)
            continue;
        key_at(conn, b, at, key, sizeof key);
        snprintf(out, outlen, "backfill of %s failed at the row with key %s: %s's \"up\" expression (%s), "
                 "which fills \"%s\", fails on it: %s. Fix that row (through either shape), or roll back and "
                 "correct the expression; `pgtandem migrate resume` continues from the checkpoint",
                 t->qname, key[0] ? key : "(unknown)", x->what, x->up, x->column, msg);
        return;
    }
    if (b->have_last) {
        struct mig_str k = {0};
        mig_str_add(&k, "(");
        key_list(&k, t, "", "");
        mig_str_add(&k, ")=(");
        for (size_t i = 0; i < t->npk; i++)
            mig_str_addf(&k, "%s%s", i ? ", " : "", b->last_key[i]);
        mig_str_add(&k, ")");
        char *text = mig_str_take(&k);
        snprintf(out, outlen, "backfill batch on %s (the %ld rows after key %s) failed: %s", t->qname,
                 b->batch_rows, text ? text : "?", pg_error);
        free(text);
    } else if (b->range_lo) {
        snprintf(out, outlen, "backfill batch on %s (the first %ld rows after key (%s)=(%s)) failed: %s", t->qname,
                 b->batch_rows, t->pk[0], b->range_lo, pg_error);
    } else {
        snprintf(out, outlen, "backfill batch on %s (its first %ld rows) failed: %s", t->qname, b->batch_rows,
                 pg_error);
    }
}

/* The CLI's backfill: key ranges on up to `workers` blocking connections
 * (see backfill_drive.h). Each worker (a lane) sends its batch with
 * PQsendQueryParams and poll() waits for whichever answers first, so one
 * thread keeps every connection busy. */
#include "backfill_drive.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backfill_pool.h"
#include "backfill_ranges.h"
#include "clock.h"
#include "log.h"
#include "migration_sql.h"
#include "migration_state.h"
#include "pgasync.h"

#define POLL_MS 50          /* the stop flag is looked at this often */
#define PAUSE_POLL_MS 1000  /* a paused backfill reads its switch this often */

struct lane {
    PGconn *conn;           /* lane 0: the engine's (borrowed); the others' are the lane's */
    int replica;            /* its session runs in replica mode (backfill_session_begin) */
    int ready;              /* its session is set up */
    size_t range;           /* the range it runs, or ran last (n: none yet) */
    int busy;
    double t0_ms, wake_ms;
};

struct run {
    struct backfill_drive *d;
    const char *migration;
    const struct mig_backfill_settings *cfg;
    struct backfill *v;
    size_t n;
    struct lane lanes[BACKFILL_MAX_WORKERS];
    int usable;             /* lanes that could be opened: the others failed to connect */
    int replica_allowed;    /* backfill_replica_allowed of the plan */
    struct backfill_gate gate;
    double lock_wait_ms;    /* when a batch last hit lock_timeout */
    int failed;             /* a batch failed: no new ones; described once the others end */
    size_t failed_lane;
    char pg_error[1024];
};

static int stopped(const struct run *x)
{
    return x->d->stop && atomic_load(x->d->stop);
}

static void nap(const struct run *x, double ms)
{
    for (double left = ms; left > 0 && !stopped(x); left -= POLL_MS)
        clock_sleep_ms((long)(left < POLL_MS ? left : POLL_MS));
}

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = '\0';
}

static void progress(struct run *x, const struct mig_bf_table *t, const struct backfill *last, int finished,
                     const char *throttle)
{
    if (!x->d->on_progress)
        return;
    struct backfill sum;
    backfill_summary(x->v, x->n, t, last, &sum);
    if (throttle)
        sum.throttle = throttle;
    x->d->on_progress(&sum, finished && sum.done, x->d->progress_arg);
}

/* A lane past the first: its own connection, with the backfill session's
 * settings. A database out of connection slots leaves the backfill with
 * the lanes it has (logged once). */
static int open_lane(struct run *x, size_t l)
{
    struct lane *ln = &x->lanes[l];
    char err[512];
    ln->conn = pgconn_open(x->d->uri, NULL, "pgtandem-migrate", 0);
    err[0] = '\0';
    if (PQstatus(ln->conn) == CONNECTION_OK &&
        backfill_session_begin(ln->conn, x->cfg, x->replica_allowed, &ln->replica, err, sizeof err) == 0) {
        /* Postgres < 14 has no connection check: the lock then lasts until
         * the backend finds its client gone some other way */
        PQclear(PQexec(ln->conn, "SET client_connection_check_interval = '1s'"));
        char hold[160];
        mig_backfill_workers_sql(x->migration, 0, hold, sizeof hold);
        PGresult *r = PQexec(ln->conn, hold);
        ln->ready = PQresultStatus(r) == PGRES_TUPLES_OK;
        PQclear(r);
        if (ln->ready)
            return 0;
    }
    if (!err[0])
        snprintf(err, sizeof err, "%s", PQerrorMessage(ln->conn));
    trim(err);
    log_warn("backfill: cannot open a connection for worker %zu (%s); going on with %zu", l + 1, err, l);
    PQfinish(ln->conn);
    ln->conn = NULL;
    x->usable = (int)l;
    return -1;
}

/* The workers the pace leaves (0 while it holds every batch back). */
static int pace_allowed(const struct run *x, int allowed, double now)
{
    const struct backfill_pace *p = x->d->pace;
    if (!p)
        return allowed;
    if ((double)atomic_load(&p->hold_until_ms) > now)
        return 0;
    int cap = atomic_load(&p->workers);
    return cap > 0 && cap < allowed ? cap : allowed;
}

static void pace_batch(struct run *x, struct backfill *b, int started)
{
    struct backfill_pace *p = x->d->pace;
    if (!p)
        return;
    if (started) {
        long cap = atomic_load(&p->batch_cap);
        if (cap > 0 && b->batch_rows > cap)
            b->batch_rows = cap < x->cfg->min_rows ? x->cfg->min_rows : cap;
        atomic_store(&p->batch_rows, b->batch_rows);
        atomic_store(&p->min_rows, x->cfg->min_rows);
        atomic_store(&p->max_rows, backfill_uncapped_rows(b));
    }
    atomic_fetch_add(&p->in_flight, started ? 1 : -1);
}

static int send_batch(struct run *x, size_t l, size_t r, double now)
{
    struct lane *ln = &x->lanes[l];
    struct backfill *b = &x->v[r];
    if (ln->range < x->n && ln->range != r)
        backfill_carry_pace(b, &x->v[ln->range]);
    pace_batch(x, b, 1);
    char *sql = backfill_batch_sql(b);
    const char *values[BACKFILL_MAX_PARAMS];
    char num[64];
    int np = backfill_batch_params(b, values, num, sizeof num);
    int ok = sql && PQsendQueryParams(ln->conn, sql, np, NULL, values, NULL, NULL, 0) == 1;
    free(sql);
    if (!ok) {
        pace_batch(x, b, 0);
        snprintf(x->pg_error, sizeof x->pg_error, "%s", sql ? PQerrorMessage(ln->conn) : "out of memory");
        trim(x->pg_error);
        x->failed = 1;
        x->failed_lane = l;
        ln->range = r;
        return -1;
    }
    ln->busy = b->busy = 1;
    ln->range = r;
    ln->t0_ms = now;
    if (x->d->budget > 0)
        x->d->budget--;
    return 0;
}

/* Starts a batch on every allowed lane that is idle and awake, while free
 * ranges last. */
static void start_batches(struct run *x, int allowed, double now)
{
    for (int l = 0; l < allowed && l < x->usable && !x->failed && x->d->budget != 0; l++) {
        struct lane *ln = &x->lanes[l];
        if (ln->busy || ln->wake_ms > now)
            continue;
        size_t r = backfill_pick(x->v, x->n, ln->range);
        if (r == x->n)
            return;
        if (!ln->ready && open_lane(x, (size_t)l) != 0)
            return;
        send_batch(x, (size_t)l, r, now);
    }
}

static void batch_ended(struct run *x, size_t l, PGresult *res)
{
    struct lane *ln = &x->lanes[l];
    struct backfill *b = &x->v[ln->range];
    double now = clock_now_ms();
    ln->busy = b->busy = 0;
    pace_batch(x, b, 0);
    if (PQresultStatus(res) == PGRES_TUPLES_OK) {
        char err[512];
        long long before = b->rows_done;
        if (backfill_apply_result(b, res, now - ln->t0_ms, err, sizeof err) != 0) {
            snprintf(x->pg_error, sizeof x->pg_error, "%s", err);
            x->failed = 1;
            x->failed_lane = l;
            return;
        }
        ln->wake_ms = now + (double)backfill_sleep_ms(b);
        if (x->d->pace) {
            atomic_fetch_add(&x->d->pace->rows_done, b->rows_done - before);
            ln->wake_ms += (double)atomic_load(&x->d->pace->pause_ms);
        }
        progress(x, b->table, b, 1, NULL);
        return;
    }
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (state && strcmp(state, "55P03") == 0) {
        backfill_lock_timeout(b);
        x->lock_wait_ms = now;
        ln->wake_ms = now + (double)backfill_sleep_ms(b);
        return;
    }
    snprintf(x->pg_error, sizeof x->pg_error, "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(ln->conn));
    trim(x->pg_error);
    x->failed = 1;
    x->failed_lane = l;
}

/* Reads whatever lane l's connection has; a whole answer ends its batch. */
static void read_lane(struct run *x, size_t l)
{
    struct lane *ln = &x->lanes[l];
    if (PQconsumeInput(ln->conn) == 0) {
        batch_ended(x, l, NULL);
        return;
    }
    if (PQisBusy(ln->conn))
        return;
    PGresult *last = NULL, *res;
    while ((res = PQgetResult(ln->conn)) != NULL) {
        PQclear(last);
        last = res;
    }
    batch_ended(x, l, last);
    PQclear(last);
}

static int any_busy(const struct run *x)
{
    for (int l = 0; l < BACKFILL_MAX_WORKERS; l++)
        if (x->lanes[l].busy)
            return 1;
    return 0;
}

/* Waits for an answer on the busy lanes, at most wait_ms. */
static void wait_answers(struct run *x, double wait_ms)
{
    struct pollfd fds[BACKFILL_MAX_WORKERS];
    size_t who[BACKFILL_MAX_WORKERS], nfds = 0;
    for (size_t l = 0; l < BACKFILL_MAX_WORKERS; l++) {
        if (!x->lanes[l].busy)
            continue;
        fds[nfds] = (struct pollfd){.fd = PQsocket(x->lanes[l].conn), .events = POLLIN};
        who[nfds++] = l;
    }
    int ms = wait_ms < 1 ? 1 : wait_ms > POLL_MS ? POLL_MS : (int)wait_ms;
    int got = poll(fds, nfds, ms);
    if (got < 0 && errno != EINTR)
        got = 0;
    for (size_t i = 0; got > 0 && i < nfds; i++)
        if (fds[i].revents)
            read_lane(x, who[i]);
}

/* The pause switch is read from the checkpoint rows while nothing runs. */
static int still_paused(struct run *x, const char *migration)
{
    const char *v[1] = {migration};
    PGresult *r = PQexecParams(x->lanes[0].conn, MIG_STATE_PAUSED_SQL, 1, NULL, v, NULL, NULL, 0);
    int paused = PQresultStatus(r) == PGRES_TUPLES_OK && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    for (size_t i = 0; i < x->n; i++)
        x->v[i].paused = paused;
    return paused;
}

/* The earliest an idle allowed lane wakes, from now (0: one is awake). */
static double next_wake(const struct run *x, int allowed, double now)
{
    double soonest = -1;
    for (int l = 0; l < allowed && l < x->usable; l++) {
        const struct lane *ln = &x->lanes[l];
        if (ln->busy)
            continue;
        double in = ln->wake_ms > now ? ln->wake_ms - now : 0;
        soonest = soonest < 0 || in < soonest ? in : soonest;
    }
    return soonest < 0 ? POLL_MS : soonest;
}

static void run_lanes(struct run *x, const char *migration)
{
    for (;;) {
        double now = clock_now_ms();
        int stop = stopped(x) || x->failed;
        if (!stop && backfill_any_paused(x->v, x->n)) {
            if (any_busy(x)) {
                wait_answers(x, POLL_MS);
                continue;
            }
            size_t cur = backfill_current(x->v, x->n);
            progress(x, x->v[cur].table, NULL, 0, "paused");
            nap(x, PAUSE_POLL_MS);
            if (!stopped(x))
                still_paused(x, migration);
            continue;
        }
        int throttled = backfill_settings_throttle(x->cfg) || now - x->lock_wait_ms < BACKFILL_LOCK_HOLD_MS;
        int allowed = pace_allowed(x, backfill_gate_update(&x->gate, (int)x->cfg->workers, throttled, now), now);
        if (!stop)
            start_batches(x, allowed, now);
        if (!any_busy(x)) {
            if (stop || x->d->budget == 0 || backfill_all_done(x->v, x->n))
                return;
            nap(x, next_wake(x, allowed, now));
            continue;
        }
        wait_answers(x, next_wake(x, allowed, now));
    }
}

static void close_lanes(struct run *x)
{
    for (size_t l = 0; l < BACKFILL_MAX_WORKERS; l++) {
        struct lane *ln = &x->lanes[l];
        if (l == 0 && ln->ready)
            backfill_session_end(ln->conn, ln->replica);
        else if (l > 0 && ln->conn)
            PQfinish(ln->conn);
    }
}

static int load_all(struct run *x, const char *migration, const struct mig_plan *plan, char *err, size_t errlen)
{
    for (size_t i = 0; i < plan->nbf; i++)
        if (backfill_ranges_load(x->d->conn, &plan->bf[i], migration, x->cfg, &x->v, &x->n, err, errlen) != 0)
            return -1;
    return 0;
}

enum backfill_drive_result backfill_drive_run(struct backfill_drive *d, const char *migration,
                                              const struct mig_plan *plan, const struct mig_backfill_settings *cfg,
                                              char *err, size_t errlen)
{
    struct run x;
    memset(&x, 0, sizeof x);
    x.d = d;
    x.cfg = cfg;
    x.lock_wait_ms = -BACKFILL_LOCK_HOLD_MS;
    x.usable = cfg->workers < 1 ? 1 : cfg->workers > BACKFILL_MAX_WORKERS ? BACKFILL_MAX_WORKERS : (int)cfg->workers;
    enum backfill_drive_result rc = BACKFILL_FAILED;
    /* before the checkpoints are read: a batch of the workers before may
     * still commit */
    x.migration = migration;
    x.replica_allowed = backfill_replica_allowed(plan);
    char gone_sql[160];
    mig_backfill_workers_sql(migration, 1, gone_sql, sizeof gone_sql);
    PGresult *gone = PQexec(d->conn, gone_sql);
    int waited = PQresultStatus(gone) == PGRES_TUPLES_OK;
    if (!waited)
        snprintf(err, errlen, "waiting for the backfill workers of an engine before: %s", PQerrorMessage(d->conn));
    PQclear(gone);
    if (!waited || load_all(&x, migration, plan, err, errlen) != 0)
        goto out;
    for (size_t l = 0; l < BACKFILL_MAX_WORKERS; l++)
        x.lanes[l].range = x.n;
    /* tables done before this run still get their closing line */
    for (size_t i = 0; i < x.n; i++)
        if (i + 1 == x.n || x.v[i + 1].table != x.v[i].table)
            if (backfill_current(x.v, x.n) > i)
                progress(&x, x.v[i].table, NULL, 1, NULL);
    x.lanes[0].conn = d->conn;
    if (backfill_session_begin(d->conn, cfg, x.replica_allowed, &x.lanes[0].replica, err, errlen) != 0)
        goto out;
    x.lanes[0].ready = 1;
    log_debug("backfill session: session_replication_role %s", x.lanes[0].replica ? "replica" : "unchanged");
    if (d->pace)
        atomic_fetch_add(&d->pace->running, 1);
    run_lanes(&x, migration);
    if (d->pace)
        atomic_fetch_sub(&d->pace->running, 1);
    if (x.failed) {
        struct lane *ln = &x.lanes[x.failed_lane];
        if (ln->range < x.n && PQstatus(ln->conn) == CONNECTION_OK)
            backfill_describe_failure(ln->conn, &x.v[ln->range], x.pg_error, err, errlen);
        else
            snprintf(err, errlen, "backfill batch on %s failed: %s",
                     ln->range < x.n ? x.v[ln->range].table->qname : "?", x.pg_error);
    } else if (stopped(&x)) {
        snprintf(err, errlen, "stopped");
    } else if (backfill_all_done(x.v, x.n)) {
        rc = BACKFILL_DONE;
    } else {
        size_t cur = backfill_current(x.v, x.n);
        progress(&x, x.v[cur].table, NULL, 0, NULL);
        rc = BACKFILL_BUDGET_SPENT;
    }
out:
    close_lanes(&x);
    backfill_ranges_free(x.v, x.n);
    return rc;
}

int backfill_drive_one(PGconn *conn, const char *migration, const struct mig_plan *plan,
                       const struct mig_backfill_settings *cfg, const char *schema, const char *table, int range_no,
                       char *err, size_t errlen)
{
    const struct mig_bf_table *t = NULL;
    for (size_t i = 0; i < plan->nbf && !t; i++)
        if (!strcmp(plan->bf[i].schema, schema) && !strcmp(plan->bf[i].name, table))
            t = &plan->bf[i];
    if (!t) {
        snprintf(err, errlen, "the plan has no backfill of %s.%s", schema, table);
        return -1;
    }
    struct backfill *v = NULL;
    size_t n = 0;
    int rc = backfill_ranges_load(conn, t, migration, cfg, &v, &n, err, errlen);
    struct backfill *b = NULL;
    for (size_t i = 0; rc == 0 && i < n && !b; i++)
        if (v[i].range_no == range_no)
            b = &v[i];
    if (rc == 0 && !b) {
        snprintf(err, errlen, "%s has no backfill range %d", t->qname, range_no);
        rc = -1;
    }
    int replica = 0;
    if (rc == 0 && !b->done && (rc = backfill_session_begin(conn, cfg, !t->data, &replica, err, errlen)) == 0) {
        rc = backfill_step(conn, b, err, errlen);
        backfill_session_end(conn, replica);
    }
    backfill_ranges_free(v, n);
    return rc;
}

/* The backfill on the proxy's event loop (see backfill_runner.h). Every
 * event (a batch answered, a lane connected, the timer) runs tick(), which
 * decides how many workers may run and starts a batch on each free one;
 * nothing waits, so client traffic never does either. */
#include "backfill_runner.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "backfill_ranges.h"
#include "clock.h"
#include "log.h"
#include "migration_sql.h"
#include "migration_state.h"
#include "relay_control.h"

/* A statement on the engine connection unanswered this long means a dead
 * connection; a batch gets ten times its target when that is longer. */
#define WATCHDOG_MS 30000
#define LANE_RETRY_MS 30000.0   /* a worker that could not connect tries again after this */
#define LANE_REOPEN_MS 1000.0   /* one whose connection dropped, after this */
#define LAG_EVERY_MS 1000.0
/* A pause set in the checkpoint rows (`migrate pause --db`, or found there
 * by a proxy that took the backfill over) is read from each batch's answer;
 * while it holds every batch, it is read this often instead, or nothing
 * would ever see `unpause`. */
#define PAUSE_EVERY_MS 1000.0

static const char LAG_SQL[] =
    "SELECT COALESCE((SELECT max(extract(epoch FROM replay_lag)) * 1000 FROM pg_stat_replication),"
    " CASE WHEN pg_is_in_recovery() THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000 END, 0)";

static void tick(struct bf_runner *b);

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    tick(arg);
}

static void wake_in(struct bf_runner *b, double ms)
{
    long whole = (long)ceil(ms < 1 ? 1 : ms);
    struct timeval tv = {whole / 1000, (whole % 1000) * 1000};
    if (evtimer_add(b->timer, &tv) != 0)
        log_warn("backfill: cannot arm its timer (libevent); the next answer wakes it");
}

static long long rows_done(const struct bf_runner *b)
{
    long long n = 0;
    for (size_t i = 0; b->bf && i < b->nbf; i++)
        n += b->bf[i].rows_done;
    return n;
}

int bf_runner_busy(const struct bf_runner *b)
{
    for (int i = 0; i < BACKFILL_MAX_WORKERS; i++)
        if (b->lanes[i].busy)
            return 1;
    return 0;
}

int bf_runner_active(const struct bf_runner *b)
{
    return b->running || b->loading;
}

/* The range ranges apply the live settings to. */
static void apply_settings(struct mig_backfill_settings *cfg, const struct throttle_settings *t)
{
    cfg->max_rows_per_sec = t->max_rows_per_sec;
    cfg->target_ms = t->target_ms;
    cfg->sleep_ratio = t->sleep_ratio;
    cfg->workers = t->workers;
}

void bf_runner_settings_changed(struct bf_runner *b)
{
    for (size_t i = 0; i < b->nbf; i++)
        apply_settings(&b->bf[i].cfg, b->thr);
}

void bf_runner_halt(struct bf_runner *b)
{
    b->running = b->loading = 0;
    b->ending = 0;
    if (b->timer)
        evtimer_del(b->timer);
    for (int i = 0; i < BACKFILL_MAX_WORKERS; i++) {
        struct bf_lane *l = &b->lanes[i];
        if (i > 0)
            pgasync_close(&l->own);
        l->busy = l->lent = l->ready = 0;
        l->wake_ms = l->retry_ms = 0;
    }
    for (size_t i = 0; i < b->nbf; i++)
        b->bf[i].busy = 0;
    backfill_ranges_free(b->next, b->nnext);
    b->next = NULL;
    b->nnext = 0;
    b->gate.allowed = 0;
}

static void end(struct bf_runner *b, enum bf_end how, const char *msg, const char *sqlstate,
                const struct backfill *range)
{
    bf_runner_halt(b);
    if (how == BF_END_DONE)
        b->finished_ms = clock_now_ms();
    b->hooks.ended(b->hooks.ctx, how, msg, sqlstate, range);
}

/* A failed batch ends the backfill once the batches still in flight are
 * answered (their checkpoints commit with them); the first failure counts. */
static void end_when_idle(struct bf_runner *b, enum bf_end how, const char *msg, const char *sqlstate, size_t range)
{
    if (b->ending)
        return;
    b->ending = 1;
    b->end_how = how;
    b->end_range = range;
    snprintf(b->end_msg, sizeof b->end_msg, "%s", msg);
    snprintf(b->end_state, sizeof b->end_state, "%s", sqlstate ? sqlstate : "");
}

static int transient(const char *sqlstate)
{
    return pg_error_transient(sqlstate);
}

/* ---- progress ---- */

void bf_runner_progress(const struct bf_runner *b, int past, long long recorded, struct bf_progress *p)
{
    memset(p, 0, sizeof *p);
    /* a proxy that only followed has no counters of its own */
    p->done = b->nbf ? rows_done(b) : recorded;
    p->total = b->nbf ? 0 : (double)p->done;
    p->estimated = p->total;
    for (size_t i = 0; i < b->nbf; i++) {
        const struct backfill *r = &b->bf[i];
        /* a range done has its real count; the others their estimate */
        p->total += r->done || (double)r->rows_done > r->est_total ? (double)r->rows_done : r->est_total;
        /* the plan's estimate, before the rows done raised it */
        p->estimated += r->est_planned;
        p->batches += r->batches;
        p->max_ms = r->max_ms > p->max_ms ? r->max_ms : p->max_ms;
    }
    double end_ms = b->finished_ms > 0 ? b->finished_ms : clock_now_ms();
    double elapsed_s = b->started_ms > 0 ? (end_ms - b->started_ms) / 1000.0 : 0;
    long long moved = p->done - b->rows_at_start;
    p->rate = elapsed_s > 0 && moved > 0 ? (double)moved / elapsed_s : 0;
    p->all_done = (b->nbf > 0 && backfill_all_done(b->bf, b->nbf)) || past;
    p->percent = p->all_done ? 100.0 : p->total > 0 ? fmin(99.9, 100.0 * (double)p->done / p->total) : 0;
    p->eta_s = p->rate > 0 && p->total > (double)p->done ? (p->total - (double)p->done) / p->rate : 0.0;
}

/* The table being filled, or once all are done the last one (NULL: none). */
static const struct backfill *current(const struct bf_runner *b)
{
    size_t i = backfill_current(b->bf, b->nbf);
    return b->nbf ? &b->bf[i < b->nbf ? i : b->nbf - 1] : NULL;
}

/* The batches in flight (a lane's question of the runner's is not one; a
 * range is on one lane at most). */
static int batches_in_flight(const struct bf_runner *b)
{
    int n = 0;
    for (size_t i = 0; b->bf && i < b->nbf; i++)
        n += b->bf[i].busy;
    return n;
}

/* The workers the gate and the latency budget both leave. */
static int workers_allowed(const struct bf_runner *b)
{
    int n = b->gate.allowed, budget = b->budget.ctl.workers;
    return budget > 0 && budget < n ? budget : n;
}

static const char *throttle_text(const struct bf_runner *b, const struct backfill *cur)
{
    return b->throttle_reason[0] ? b->throttle_reason : cur && cur->throttle ? cur->throttle : "none";
}

json_t *bf_runner_json(const struct bf_runner *b, int past, long long recorded)
{
    struct bf_progress p;
    bf_runner_progress(b, past, recorded, &p);
    const struct backfill *cur = current(b);
    size_t ranges_done = 0;
    long lock_conflicts = 0;
    for (size_t i = 0; i < b->nbf; i++) {
        ranges_done += b->bf[i].done;
        lock_conflicts += b->bf[i].lock_timeouts;
    }
    return json_pack("{s:I,s:f,s:f,s:f,s:f,s:I,s:I,s:f,s:s,s:o,s:f,s:b,s:i,s:I,s:I,s:I,s:I,s:o}", "rows_done",
                     (json_int_t)p.done, "est_total", p.total, "percent", p.percent, "rows_per_s", p.rate, "eta_s",
                     p.eta_s, "batch_rows", (json_int_t)(cur ? cur->batch_rows : 0), "batches", (json_int_t)p.batches,
                     "max_batch_ms", p.max_ms, "throttle", throttle_text(b, cur), "settings",
                     settings_throttle_json(b->thr), "estimated_rows", p.estimated, "done",
                     p.all_done, "workers", b->running ? workers_allowed(b) : 0, "batches_in_flight",
                     (json_int_t)batches_in_flight(b), "ranges", (json_int_t)b->nbf,
                     "ranges_done", (json_int_t)ranges_done, "lock_conflicts", (json_int_t)lock_conflicts, "budget",
                     bf_budget_json(&b->budget));
}

const char *bf_runner_throttle_word(const struct bf_runner *b)
{
    if (b->throttle_kind)
        return b->throttle_kind;
    const struct backfill *cur = b->nbf && !backfill_all_done(b->bf, b->nbf) ? current(b) : NULL;
    if (!cur || !cur->throttle)
        return "none";
    if (!strcmp(cur->throttle, "max-rows"))
        return "max_rows";
    if (!strcmp(cur->throttle, "sleep-ratio"))
        return "sleep_ratio";
    if (!strcmp(cur->throttle, "lock-wait"))
        return "lock_wait";
    return !strcmp(cur->throttle, "paused") ? "paused" : "none";
}

/* The same line `migrate start` shows, in the proxy's log (all tables). */
static void log_progress(struct bf_runner *b, const struct backfill *last)
{
    if (!progress_line_due(&b->progress, 0))
        return;
    struct bf_progress p;
    bf_runner_progress(b, 0, 0, &p);
    const struct backfill *cur = current(b);
    struct progress_sample smp = {
        .table = cur->table->qname, .rows_done = (double)p.done, .est_total = p.total, .rows_per_s = p.rate,
        .eta_s = p.eta_s, .batch_rows = (double)last->batch_rows, .last_batch_ms = last->last_ms,
        .max_batch_ms = p.max_ms, .throttle = throttle_text(b, last)};
    progress_line_show(&b->progress, &smp, 0);
}

/* ---- throttling ---- */

/* What holds every batch back: an operator's pause, replica lag. The
 * application's latency is the budget's (below). Returns how long no
 * batch may start (0: go). */
static double throttle_state(struct bf_runner *b)
{
    b->throttle_reason[0] = '\0';
    b->throttle_kind = NULL;
    const struct backfill *cur = current(b);
    if (b->thr->paused || (cur && cur->paused)) {
        b->throttle_kind = "paused";
        snprintf(b->throttle_reason, sizeof b->throttle_reason, "paused by operator");
        return BF_RUNNER_HOLD_MS;
    }
    if (b->thr->max_replica_lag_ms > 0 && b->replica_lag_ms > (double)b->thr->max_replica_lag_ms) {
        b->throttle_kind = "replica_lag";
        snprintf(b->throttle_reason, sizeof b->throttle_reason, "replica lag %.0f ms > %ld ms", b->replica_lag_ms,
                 b->thr->max_replica_lag_ms);
        return BF_RUNNER_HOLD_MS;
    }
    return 0;
}

/* The latency budget's turn (backfill_runner_budget.h): how long no batch
 * may start (0: batches may go). */
static double budget_step(struct bf_runner *b, double now)
{
    const struct backfill *cur = current(b);
    struct bf_budget_facts t = {.batch_rows = cur ? cur->batch_rows : 0, .min_rows = cur ? cur->cfg.min_rows : 1,
                                /* a cap above what the sizing runs holds nothing back: climbing it on to
                                 * max_rows (100,000 rows, seconds of decisions) kept one worker for nothing */
                                .max_rows = cur ? backfill_uncapped_rows(cur) : 1, .rows_done = rows_done(b),
                                .busy = batches_in_flight(b)};
    return bf_budget_step(&b->budget, now, &t, b->throttle_reason, sizeof b->throttle_reason, &b->throttle_kind);
}

void bf_runner_budget(const struct bf_runner *b, struct bf_budget_report *out)
{
    bf_budget_report(&b->budget, b->running, out);
}

static int throttled(const struct bf_runner *b, double now)
{
    /* the latency budget decides its workers itself (workers_allowed): the
     * gate's drop to one, climbing back a worker a second, overrode the
     * budget's choice to keep them and shrink the batches instead */
    int budget = b->throttle_kind && strcmp(b->throttle_kind, BF_BUDGET_KIND) == 0;
    return (b->throttle_kind && !budget) || b->thr->max_rows_per_sec > 0 || b->thr->sleep_ratio > 0.0 ||
           now - b->lock_wait_ms < BACKFILL_LOCK_HOLD_MS;
}

/* The engine connection's answer to a question of the runner's between
 * batches (lane 0 free again): its one value, NULL when there is none or
 * the run ended meanwhile. *checked_ms: when it was last asked. */
static const char *idle_answer(struct bf_runner *b, const PGresult *res, const char *error, double *checked_ms)
{
    b->lanes[0].busy = 0;
    if (!b->running)
        return NULL;
    *checked_ms = clock_now_ms();
    return !error && res && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0) ? PQgetvalue(res, 0, 0) : NULL;
}

static void on_lag(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)sqlstate;
    struct bf_runner *b = ctx;
    const char *lag = idle_answer(b, res, error, &b->lag_checked_ms);
    if (lag)
        b->replica_lag_ms = atof(lag);
    if (b->running)
        tick(b);
}

static void on_paused_read(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)sqlstate;
    struct bf_runner *b = ctx;
    const char *paused = idle_answer(b, res, error, &b->pause_checked_ms);
    for (size_t i = 0; paused && i < b->nbf; i++)
        b->bf[i].paused = paused[0] == 't';
    if (b->running)
        tick(b);
}

/* ---- the lanes ---- */

static void lane_failed(struct bf_lane *l, const char *why, double retry_after_ms)
{
    struct bf_runner *b = l->owner;
    pgasync_close(&l->own);
    l->ready = l->busy = 0;
    l->retry_ms = clock_now_ms() + retry_after_ms;
    if (!l->warned)
        log_warn("migration %s: backfill worker %d has no connection (%s); the others go on, it tries again in "
                 "%.0f s", b->name, l->index + 1, why, retry_after_ms / 1000.0);
    l->warned = 1;
}

static void on_lane_session(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    (void)sqlstate;
    struct bf_lane *l = ctx;
    if (!l->owner->running)
        return;
    if (error) {
        lane_failed(l, error, LANE_RETRY_MS);
        return;
    }
    if (l->warned)
        log_info("migration %s: backfill worker %d is connected again", l->owner->name, l->index + 1);
    l->ready = 1;
    l->warned = 0;
    tick(l->owner);
}

static void on_lane_connected(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    (void)sqlstate;
    struct bf_lane *l = ctx;
    struct bf_runner *b = l->owner;
    if (!b->running) {
        pgasync_close(&l->own);
        return;
    }
    char *session = error || !b->nbf ? NULL : backfill_session_sql(&b->bf[0]);
    char *sql = NULL;
    if (session) {
        struct mig_str s = {0};
        char hold[160];
        mig_backfill_workers_sql(b->name, 0, hold, sizeof hold);
        mig_str_addf(&s, "%s; %s; %s", MIG_STATE_SESSION_SQL, session, hold);
        sql = mig_str_take(&s);
    }
    free(session);
    if (error || !sql || pgasync_send(&l->own, sql, 0, NULL, on_lane_session, l) != 0)
        lane_failed(l, error ? error : sql ? l->own.error : "out of memory", LANE_RETRY_MS);
    free(sql);
}

/* A worker past the first connects (while its retry time allows). */
static void open_lane(struct bf_runner *b, struct bf_lane *l, double now)
{
    if (l->own.conn || now < l->retry_ms)
        return; /* connecting, or waiting to try again */
    if (pgasync_connect(&l->own, b->engine_db, on_lane_connected, l) != 0)
        lane_failed(l, l->own.error, LANE_RETRY_MS);
}

static void on_batch(void *ctx, PGresult *res, const char *error, const char *sqlstate);

static void send_batch(struct bf_runner *b, struct bf_lane *l, size_t r, double now)
{
    struct backfill *rg = &b->bf[r];
    if (l->range < b->nbf && l->range != r)
        backfill_carry_pace(rg, &b->bf[l->range]);
    char *sql = backfill_batch_sql(rg);
    const char *values[BACKFILL_MAX_PARAMS];
    char num[64];
    int n = backfill_batch_params(rg, values, num, sizeof num);
    /* a batch aims at target_ms: many times that without an answer is a dead connection */
    long bound = 10 * b->thr->target_ms;
    l->conn->watchdog_ms = bound > WATCHDOG_MS ? (int)(bound < 3600000 ? bound : 3600000) : WATCHDOG_MS;
    l->range = r;
    int rc = sql ? pgasync_send(l->conn, sql, n, values, on_batch, l) : -1;
    free(sql);
    if (rc == 0) {
        l->busy = rg->busy = 1;
        l->t0_ms = now;
        bf_budget_batches_changed(&b->budget, batches_in_flight(b));
        return;
    }
    if (l->index == 0)
        end_when_idle(b, BF_END_FAILED, l->conn->error[0] ? l->conn->error : "out of memory", NULL, r);
    else
        lane_failed(l, l->conn->error[0] ? l->conn->error : "out of memory", LANE_REOPEN_MS);
}

static void on_batch(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    struct bf_lane *l = ctx;
    struct bf_runner *b = l->owner;
    l->busy = 0;
    if (!b->running || l->range >= b->nbf)
        return; /* halted meanwhile: the caller has the connection back */
    struct backfill *rg = &b->bf[l->range];
    rg->busy = 0;
    bf_budget_batches_changed(&b->budget, batches_in_flight(b));
    double now = clock_now_ms();
    char msg[1024];
    if (error && sqlstate && strcmp(sqlstate, "55P03") == 0) {
        backfill_lock_timeout(rg);
        b->lock_wait_ms = now;
        l->wake_ms = now + (double)backfill_sleep_ms(rg);
    } else if (error && transient(sqlstate) && l->index == 0) {
        end(b, BF_END_LOST, error, sqlstate, NULL);
        return;
    } else if (error && transient(sqlstate)) {
        lane_failed(l, error, LANE_REOPEN_MS); /* its range goes on from its checkpoint */
    } else if (error && b->hooks.stopping(b->hooks.ctx)) {
        snprintf(msg, sizeof msg, "backfill batch on %.200s failed: %.700s", rg->table->qname, error);
        end_when_idle(b, BF_END_FAILED, msg, sqlstate, l->range);
    } else if (error) {
        end_when_idle(b, BF_END_DATA, error, sqlstate, l->range);
    } else if (backfill_apply_result(rg, res, now - l->t0_ms, msg, sizeof msg) != 0) {
        end_when_idle(b, BF_END_FAILED, msg, NULL, l->range);
    } else {
        if (b->batch_seconds)
            histogram_observe(b->batch_seconds, (now - l->t0_ms) / 1000.0);
        log_progress(b, rg);
        l->wake_ms = now + (double)backfill_sleep_ms(rg) + b->budget.ctl.pause_ms;
    }
    tick(b);
}

/* ---- the scheduler ---- */

/* Whether the run is over: stopped, failed, done, or the engine
 * connection gone. Ends it when nothing is in flight any more. */
static int over(struct bf_runner *b)
{
    struct bf_lane *l0 = &b->lanes[0];
    if (b->ending || b->hooks.stopping(b->hooks.ctx)) {
        if (bf_runner_busy(b))
            return 1;
        if (b->ending)
            end(b, b->end_how, b->end_msg, b->end_state[0] ? b->end_state : NULL,
                b->end_how == BF_END_DATA ? &b->bf[b->end_range] : NULL);
        else
            end(b, BF_END_STOPPED, "stopped", NULL, NULL);
        return 1;
    }
    if (!l0->busy && !l0->lent && !pgasync_ready(l0->conn)) { /* it died while idle (paused, throttled) */
        end(b, BF_END_LOST, l0->conn->error[0] ? l0->conn->error : "the engine connection closed while idle",
            "08006", NULL);
        return 1;
    }
    if (backfill_all_done(b->bf, b->nbf)) {
        if (!bf_runner_busy(b))
            end(b, BF_END_DONE, NULL, NULL, NULL);
        return 1;
    }
    return 0;
}

/* The engine connection between two batches: the caller's statement
 * (throttle settings to save), or the replica lag when it is due. Returns
 * 1 when lane 0 is taken for that. */
static int use_idle_engine(struct bf_runner *b, double now)
{
    struct bf_lane *l0 = &b->lanes[0];
    if (l0->busy || l0->lent)
        return 1;
    if (b->hooks.idle && b->hooks.idle(b->hooks.ctx)) {
        l0->lent = 1;
        return 1;
    }
    if (b->thr->max_replica_lag_ms > 0 && now - b->lag_checked_ms > LAG_EVERY_MS) {
        if (pgasync_send(l0->conn, LAG_SQL, 0, NULL, on_lag, b) != 0) {
            end_when_idle(b, BF_END_FAILED, "replica lag check: cannot send it", NULL, b->nbf);
            return 1;
        }
        l0->busy = 1;
        return 1;
    }
    if (now - b->pause_checked_ms > PAUSE_EVERY_MS && backfill_any_paused(b->bf, b->nbf) && !bf_runner_busy(b)) {
        const char *values[1] = {b->name};
        if (pgasync_send(l0->conn, MIG_STATE_PAUSED_SQL, 1, values, on_paused_read, b) != 0) {
            end_when_idle(b, BF_END_FAILED, "the pause switch: cannot read it", NULL, b->nbf);
            return 1;
        }
        l0->busy = 1;
        return 1;
    }
    return 0;
}

static void tick(struct bf_runner *b)
{
    if (!b->running || over(b))
        return;
    double now = clock_now_ms();
    int lane0_taken = use_idle_engine(b, now);
    if (b->ending) {
        over(b);
        return;
    }
    double hold = throttle_state(b);
    if (hold <= 0)
        hold = budget_step(b, now);
    backfill_gate_update(&b->gate, (int)b->thr->workers, throttled(b, now), now);
    int allowed = workers_allowed(b);
    if (allowed > BACKFILL_MAX_WORKERS)
        allowed = BACKFILL_MAX_WORKERS;
    double soonest = hold > 0 ? hold : -1;
    for (int i = 0; hold <= 0 && i < allowed && !b->ending; i++) {
        struct bf_lane *l = &b->lanes[i];
        if (l->busy || (i == 0 && lane0_taken))
            continue;
        if (l->wake_ms > now) {
            soonest = soonest < 0 || l->wake_ms - now < soonest ? l->wake_ms - now : soonest;
            continue;
        }
        if (!l->ready) {
            open_lane(b, l, now);
            if (!l->own.conn && l->retry_ms > now)
                soonest = soonest < 0 || l->retry_ms - now < soonest ? l->retry_ms - now : soonest;
            continue;
        }
        size_t r = backfill_pick(b->bf, b->nbf, l->range);
        if (r == b->nbf)
            break;
        struct backfill *rg = &b->bf[r];
        rg->batch_rows = budget_batch_rows(&b->budget.ctl, rg->batch_rows);
        send_batch(b, l, r, now);
    }
    /* the gate climbs back one worker a second: look again then */
    if (!throttled(b, now) && allowed < b->thr->workers)
        soonest = soonest < 0 || BACKFILL_CLIMB_MS < soonest ? BACKFILL_CLIMB_MS : soonest;
    double budget_in = bf_budget_wake_in(&b->budget, now);
    if (budget_in >= 0)
        soonest = soonest < 0 || budget_in < soonest ? budget_in : soonest;
    if (b->ending)
        over(b);
    else if (soonest >= 0)
        wake_in(b, soonest);
}

void bf_runner_kick(struct bf_runner *b)
{
    b->lanes[0].lent = 0;
    tick(b);
}

/* ---- loading the checkpoints ---- */

static void load_table(struct bf_runner *b);

/* A lost connection is retried with the database's own words; anything
 * else fails the backfill saying what it was doing. */
static void load_failed(struct bf_runner *b, const char *doing, const char *error, const char *sqlstate)
{
    char msg[1024];
    snprintf(msg, sizeof msg, "%s: %s", doing, error);
    end(b, transient(sqlstate) ? BF_END_LOST : BF_END_FAILED, transient(sqlstate) ? error : msg, sqlstate, NULL);
}

static void loaded(struct bf_runner *b, PGresult *res, const char *error, const char *sqlstate, const char *doing)
{
    char err[1024];
    const struct mig_bf_table *t = &b->plan->bf[b->table];
    if (error) {
        snprintf(err, sizeof err, "%s of %s", doing, t->qname);
        load_failed(b, err, error, sqlstate);
        return;
    }
    struct mig_backfill_settings cfg = *b->file_cfg;
    apply_settings(&cfg, b->thr);
    if (backfill_ranges_apply(res, t, b->name, &cfg, &b->next, &b->nnext, err, sizeof err) != 0) {
        end(b, BF_END_FAILED, err, NULL, NULL);
        return;
    }
    b->table++;
    load_table(b);
}

static void on_created(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    struct bf_runner *b = ctx;
    if (b->loading)
        loaded(b, res, error, sqlstate, "making the backfill ranges");
}

/* The plan of a table's ranges is answered: one range when it failed. */
static void on_planned(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    struct bf_runner *b = ctx;
    if (!b->loading)
        return;
    const struct mig_bf_table *t = &b->plan->bf[b->table];
    if (error && transient(sqlstate)) {
        end(b, BF_END_LOST, error, sqlstate, NULL);
        return;
    }
    int n;
    double est;
    char why[512], num[64];
    backfill_ranges_choose(t, error ? NULL : res, error, &n, &est, why, sizeof why);
    log_info("migration %s: backfill of %s: %s", b->name, t->qname, why);
    const char *values[BACKFILL_RANGES_CREATE_NPARAMS];
    int nv = backfill_ranges_create_params(t, b->name, error ? NULL : res, n, est, values, num, sizeof num);
    if (pgasync_send(b->lanes[0].conn, BACKFILL_RANGES_CREATE_SQL, nv, values, on_created, b) != 0)
        end(b, BF_END_LOST, b->lanes[0].conn->error, "08006", NULL);
}

static void on_table_loaded(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    struct bf_runner *b = ctx;
    if (!b->loading)
        return;
    if (error || PQntuples(res) > 0) {
        loaded(b, res, error, sqlstate, "loading the backfill checkpoints");
        return;
    }
    char name[256];
    const char *values[4];
    const struct mig_bf_table *t = &b->plan->bf[b->table];
    char *sql = backfill_ranges_plan_sql(t);
    backfill_ranges_plan_params(t, values, name, sizeof name);
    int rc = sql ? pgasync_send(b->lanes[0].conn, sql, 4, values, on_planned, b) : -1;
    free(sql);
    if (rc != 0)
        end(b, sql ? BF_END_LOST : BF_END_FAILED, sql ? b->lanes[0].conn->error : "out of memory", "08006", NULL);
}

static void on_session(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    struct bf_runner *b = ctx;
    if (!b->loading)
        return;
    if (error) {
        load_failed(b, "preparing the backfill session", error, sqlstate);
        return;
    }
    b->loading = 0;
    b->running = 1;
    b->lanes[0].ready = 1;
    bf_budget_restart(&b->budget, b->name);
    b->started_ms = clock_now_ms();
    b->finished_ms = 0;
    b->rows_at_start = rows_done(b);
    if (b->hooks.running)
        b->hooks.running(b->hooks.ctx);
    tick(b);
}

/* One table at a time, each from the loop: the database may be a round
 * trip away. Until every table's arrive, the status shows the ranges it
 * showed. */
static void load_table(struct bf_runner *b)
{
    struct bf_lane *l0 = &b->lanes[0];
    if (b->table < b->plan->nbf) {
        const struct mig_bf_table *t = &b->plan->bf[b->table];
        const char *values[3] = {b->name, t->schema, t->name};
        if (pgasync_send(l0->conn, BACKFILL_RANGES_LOAD_SQL, 3, values, on_table_loaded, b) != 0)
            end(b, BF_END_LOST, l0->conn->error, "08006", NULL);
        return;
    }
    backfill_ranges_free(b->bf, b->nbf);
    b->bf = b->next;
    b->nbf = b->nnext;
    b->next = NULL;
    b->nnext = 0;
    for (int i = 0; i < BACKFILL_MAX_WORKERS; i++)
        b->lanes[i].range = b->nbf;
    char *sql = b->nbf ? backfill_session_sql(&b->bf[0]) : strdup("SELECT 1");
    if (!sql || pgasync_send(l0->conn, sql, 0, NULL, on_session, b) != 0)
        end(b, sql ? BF_END_LOST : BF_END_FAILED, sql ? l0->conn->error : "out of memory", "08006", NULL);
    free(sql);
}

static void on_workers_gone(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    struct bf_runner *b = ctx;
    if (!b->loading)
        return;
    if (error) {
        load_failed(b, "waiting for the backfill workers of an engine before", error, sqlstate);
        return;
    }
    load_table(b);
}

void bf_runner_start(struct bf_runner *b, struct pgasync *db, const char *name, const struct mig_plan *plan,
                     const struct mig_backfill_settings *cfg)
{
    bf_runner_halt(b);
    b->lanes[0].conn = db;
    b->name = name;
    b->plan = plan;
    b->file_cfg = cfg;
    b->table = 0;
    b->loading = 1;
    b->lock_wait_ms = -BACKFILL_LOCK_HOLD_MS;
    char gone[160];
    mig_backfill_workers_sql(name, 1, gone, sizeof gone);
    if (pgasync_send(db, gone, 0, NULL, on_workers_gone, b) != 0)
        end(b, BF_END_LOST, db->error, "08006", NULL);
}

int bf_runner_init(struct bf_runner *b, struct event_base *base, struct relay *relay, const char *engine_db,
                   const struct bf_runner_hooks *hooks, struct histogram *batch_seconds,
                   const struct throttle_settings *thr)
{
    memset(b, 0, sizeof *b);
    b->thr = thr;
    b->base = base;
    b->relay = relay;
    b->engine_db = engine_db;
    bf_budget_init(&b->budget, relay, thr);
    b->hooks = *hooks;
    b->batch_seconds = batch_seconds;
    for (int i = 0; i < BACKFILL_MAX_WORKERS; i++) {
        struct bf_lane *l = &b->lanes[i];
        char label[32];
        l->owner = b;
        l->index = i;
        pgasync_init(&l->own, base);
        snprintf(label, sizeof label, "backfill %d", i + 1);
        pgasync_configure(&l->own, label, WATCHDOG_MS, NULL);
        l->conn = &l->own;
    }
    b->timer = evtimer_new(base, timer_cb, b);
    return b->timer ? 0 : -1;
}

void bf_runner_reset(struct bf_runner *b)
{
    bf_runner_halt(b);
    backfill_ranges_free(b->bf, b->nbf);
    b->bf = NULL;
    b->nbf = 0;
    b->throttle_reason[0] = '\0';
    b->throttle_kind = NULL;
    b->replica_lag_ms = b->lag_checked_ms = b->pause_checked_ms = 0;
    b->started_ms = b->finished_ms = 0;
    b->rows_at_start = 0;
    bf_budget_init(&b->budget, b->relay, b->thr);
}

void bf_runner_free(struct bf_runner *b)
{
    bf_runner_reset(b);
    if (b->timer)
        event_free(b->timer);
    b->timer = NULL;
}

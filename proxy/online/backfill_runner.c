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
#define HOLD_MS 500.0           /* paused, or a replica lags: look again after this */

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
    for (size_t i = 0; i < b->nbf; i++)
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

static json_t *budget_json(const struct bf_runner *b);

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
    for (size_t i = 0; i < b->nbf; i++)
        ranges_done += b->bf[i].done;
    return json_pack("{s:I,s:f,s:f,s:f,s:f,s:I,s:I,s:f,s:s,s:o,s:f,s:b,s:i,s:I,s:I,s:o}", "rows_done",
                     (json_int_t)p.done, "est_total", p.total, "percent", p.percent, "rows_per_s", p.rate, "eta_s",
                     p.eta_s, "batch_rows", (json_int_t)(cur ? cur->batch_rows : 0), "batches", (json_int_t)p.batches,
                     "max_batch_ms", p.max_ms, "throttle", throttle_text(b, cur), "settings",
                     settings_throttle_json(b->thr), "estimated_rows", p.estimated, "done",
                     p.all_done, "workers", b->running ? workers_allowed(b) : 0, "ranges", (json_int_t)b->nbf,
                     "ranges_done", (json_int_t)ranges_done, "budget", budget_json(b));
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
        return HOLD_MS;
    }
    if (b->thr->max_replica_lag_ms > 0 && b->replica_lag_ms > (double)b->thr->max_replica_lag_ms) {
        b->throttle_kind = "replica_lag";
        snprintf(b->throttle_reason, sizeof b->throttle_reason, "replica lag %.0f ms > %ld ms", b->replica_lag_ms,
                 b->thr->max_replica_lag_ms);
        return HOLD_MS;
    }
    return 0;
}

/* ---- the latency budget ---- */

static const char *const route_words[LATENCY_ROUTES] = {"old", "new"};

/* Measuring the application's p99 without the backfill: this long with no
 * batch in flight, or this short when no query came at all. */
#define BASELINE_MS 1000.0
#define BASELINE_QUIET_MS 300.0
/* Measured again this often while a ratio is kept (the app's own load
 * moves), or, with no baseline yet, once the app has traffic. */
#define BASELINE_EVERY_MS 60000.0
#define BASELINE_RETRY_MS 10000.0

static int budget_wants_baseline(const struct bf_runner *b, double now)
{
    const struct bf_budget_probe *p = &b->budget;
    if (b->thr->app_p99_budget <= 0 || b->thr->max_app_p99_ms > 0)
        return 0;
    if (p->baseline_at_ms <= 0)
        return 1;
    int known = 0, traffic = 0;
    for (int r = 0; r < LATENCY_ROUTES; r++) {
        known |= p->baseline_ms[r] > 0;
        traffic |= p->samples[r] >= BUDGET_MIN_SAMPLES && p->baseline_ms[r] <= 0;
    }
    if (traffic && now - p->baseline_at_ms >= BASELINE_RETRY_MS)
        return 1; /* a route that was quiet then has traffic now */
    return known && now - p->baseline_at_ms >= BASELINE_EVERY_MS;
}

static void budget_read(const struct bf_runner *b, struct latency_fine *out)
{
    for (int r = 0; r < LATENCY_ROUTES; r++)
        relay_latency_read(b->relay, r, &out[r]);
}

static int batches_in_flight(const struct bf_runner *b)
{
    for (size_t i = 0; b->bf && i < b->nbf; i++)
        if (b->bf[i].busy)
            return 1;
    return 0;
}

/* A batch started or ended: the moments with none in flight are summed
 * into `quiet`, what the app's latency is without the backfill now. A
 * query is counted when it ends, and those a batch held end just after
 * it: a moment begins only a grace after the last batch (the budget's
 * limit: a held query still running then was slow by itself), read by
 * budget_quiet_poll at the next turn of the runner. */
static void budget_batches_changed(struct bf_runner *b)
{
    struct bf_budget_probe *p = &b->budget;
    if (!batches_in_flight(b)) {
        if (!p->quiet_open && p->quiet_at_ms <= 0) {
            double grace = 0;
            for (int r = 0; r < LATENCY_ROUTES; r++)
                if (p->ctl.limit_ms[r] > grace)
                    grace = p->ctl.limit_ms[r];
            p->quiet_at_ms = clock_now_ms() + (grace > 0 ? grace : 50.0);
        }
        return;
    }
    p->quiet_at_ms = 0;
    if (!p->quiet_open)
        return;
    struct latency_fine now[LATENCY_ROUTES];
    budget_read(b, now);
    for (int r = 0; r < LATENCY_ROUTES; r++)
        for (int i = 0; i <= LATENCY_FINE_BUCKETS; i++)
            p->quiet[r].counts[i] += now[r].counts[i] - p->quiet_from[r].counts[i];
    p->quiet_open = 0;
}

/* The grace after the last batch has passed: the quiet moment begins. */
static void budget_quiet_poll(struct bf_runner *b, double now)
{
    struct bf_budget_probe *p = &b->budget;
    if (p->quiet_open || p->quiet_at_ms <= 0 || now < p->quiet_at_ms || batches_in_flight(b))
        return;
    budget_read(b, p->quiet_from);
    p->quiet_open = 1;
    p->quiet_at_ms = 0;
}

/* The quiet moments' p99 per route, the one still open counted to now. */
static void budget_quiet(struct bf_runner *b, double *p99, uint64_t *n)
{
    struct bf_budget_probe *p = &b->budget;
    struct latency_fine sum[LATENCY_ROUTES];
    memcpy(sum, p->quiet, sizeof sum);
    if (p->quiet_open) {
        struct latency_fine now[LATENCY_ROUTES];
        budget_read(b, now);
        for (int r = 0; r < LATENCY_ROUTES; r++)
            for (int i = 0; i <= LATENCY_FINE_BUCKETS; i++)
                sum[r].counts[i] += now[r].counts[i] - p->quiet_from[r].counts[i];
    }
    for (int r = 0; r < LATENCY_ROUTES; r++)
        p99[r] = latency_fine_quantile_ms(&sum[r], NULL, 0.99, &n[r]);
}

/* Forgets the quiet moments so far (the next judgement starts afresh). */
static void budget_quiet_reset(struct bf_runner *b)
{
    struct bf_budget_probe *p = &b->budget;
    memset(p->quiet, 0, sizeof p->quiet);
    if (p->quiet_open)
        budget_read(b, p->quiet_from);
}

/* The window's p99 per route, a reading every BUDGET_EVAL_MS. */
static void budget_window(struct bf_runner *b, double now)
{
    struct bf_budget_probe *p = &b->budget;
    if (p->window_filled && now - p->window_ms < BUDGET_EVAL_MS)
        return;
    p->window_ms = now;
    budget_read(b, p->window[p->window_next]);
    int oldest = p->window_filled >= BF_BUDGET_WINDOW ? (p->window_next + 1) % (BF_BUDGET_WINDOW + 1) : 0;
    for (int r = 0; r < LATENCY_ROUTES; r++)
        p->p99_ms[r] = latency_fine_quantile_ms(&p->window[p->window_next][r], &p->window[oldest][r], 0.99,
                                                &p->samples[r]);
    p->window_next = (p->window_next + 1) % (BF_BUDGET_WINDOW + 1);
    if (p->window_filled < BF_BUDGET_WINDOW)
        p->window_filled++;
}

static void budget_measured(struct bf_runner *b, double now)
{
    struct bf_budget_probe *p = &b->budget;
    struct latency_fine cur[LATENCY_ROUTES];
    budget_read(b, cur);
    char said[256];
    int n = 0;
    for (int r = 0; r < LATENCY_ROUTES; r++) {
        uint64_t k = 0;
        double p99 = latency_fine_quantile_ms(&cur[r], &p->measure_base[r], 0.99, &k);
        if (k < BUDGET_MIN_SAMPLES)
            continue; /* too few to say: the last baseline stays */
        p->baseline_ms[r] = p99;
        p->baseline_samples[r] = k;
        n += snprintf(said + n, sizeof said - (size_t)n, "%s%s release %.1f ms (%llu queries)", n ? ", " : "",
                      route_words[r], p99, (unsigned long long)k);
        if (n >= (int)sizeof said)
            n = (int)sizeof said - 1;
    }
    if (n && p->baseline_at_ms <= 0) {
        budget_start_gently(&p->ctl, current(b) ? current(b)->cfg.min_rows : 1);
        log_info("migration %s: latency budget engaged: the backfill starts gently (one worker, batches of %ld rows) "
                 "and climbs while the app stays within its budget", b->name, p->ctl.batch_cap);
    }
    if (n)
        log_info("migration %s: the app's p99 without the backfill: %s; the backfill keeps it within %.2g x", b->name,
                 said, b->thr->app_p99_budget);
    else if (p->baseline_at_ms <= 0)
        log_info("migration %s: no app traffic through this proxy to measure a latency baseline on; the budget "
                 "(%.2g x) holds once there is", b->name, b->thr->app_p99_budget);
    p->baseline_at_ms = now;
    p->measure = 0;
    p->measure_from_ms = 0;
    p->window_filled = 0; /* the window starts again, without the pause in it */
}

static void budget_log(struct bf_runner *b, enum budget_event ev)
{
    const struct budget *c = &b->budget.ctl;
    switch (ev) {
    case BUDGET_ENGAGED:
        log_info("migration %s: latency budget engaged: %s; one worker, batches of at most %ld rows, %.0f ms apart",
                 b->name, c->reason, c->batch_cap, c->pause_ms);
        break;
    case BUDGET_RELEASED:
        log_info("migration %s: latency budget released: the app's p99 is within %.1f ms again; the backfill is "
                 "back to full speed", b->name, c->limit_ms[c->route]);
        break;
    case BUDGET_STARVED:
        log_warn("migration %s: the backfill cannot keep the app within its latency budget even at its smallest "
                 "batches and longest pauses: %s; it goes on at %.0f rows/s (widen the budget live: "
                 "migrate throttle app_p99_budget=N, or max_app_p99_ms=N)", b->name, c->reason, c->starved_rate);
        break;
    case BUDGET_UNSTARVED:
        log_info("migration %s: the app is within its latency budget again", b->name);
        break;
    case BUDGET_APP_SLOW:
        log_info("migration %s: latency budget: the app's p99 is over its budget while no batch is in flight too "
                 "(old release %.1f ms, new release %.1f ms; 0: that route is not): it is slow by itself, so that is "
                 "its baseline now", b->name, c->app_slow_ms[0], c->app_slow_ms[1]);
        break;
    case BUDGET_NOTHING:
        break;
    }
}

/* The budget's turn: a baseline to measure (returns how long no batch may
 * start), else a decision on the last window. */
static double budget_step(struct bf_runner *b, double now)
{
    struct bf_budget_probe *p = &b->budget;
    if (!p->measure && budget_wants_baseline(b, now))
        p->measure = 1;
    if (p->measure) {
        snprintf(b->throttle_reason, sizeof b->throttle_reason, "measuring the app's p99 without the backfill");
        if (bf_runner_busy(b))
            return HOLD_MS; /* the batches in flight end first; each end ticks */
        if (p->measure_from_ms <= 0) {
            p->measure_from_ms = now;
            budget_read(b, p->measure_base);
        }
        double took = now - p->measure_from_ms;
        uint64_t seen = 0;
        struct latency_fine cur;
        for (int r = 0; r < LATENCY_ROUTES; r++) {
            relay_latency_read(b->relay, r, &cur);
            uint64_t k = 0;
            latency_fine_quantile_ms(&cur, &p->measure_base[r], 0.99, &k);
            seen += k;
        }
        if (took < BASELINE_MS && (seen > 0 || took < BASELINE_QUIET_MS))
            return (seen > 0 ? BASELINE_MS : BASELINE_QUIET_MS) - took;
        budget_measured(b, now);
        b->throttle_reason[0] = '\0';
    }
    budget_window(b, now);
    const struct backfill *cur = current(b);
    struct budget_input in = {
        .ratio = b->thr->app_p99_budget, .absolute_ms = (double)b->thr->max_app_p99_ms,
        .batch_rows = cur ? cur->batch_rows : 0, .min_rows = cur ? cur->cfg.min_rows : 1,
        .max_rows = cur ? cur->cfg.max_rows : 1, .wanted_workers = (int)b->thr->workers, .rows_done = rows_done(b)};
    in.floor_ms = (double)b->thr->app_p99_floor_ms;
    budget_quiet_poll(b, now);
    budget_quiet(b, in.quiet_p99_ms, in.quiet_samples);
    for (int r = 0; r < LATENCY_ROUTES; r++) {
        in.baseline_ms[r] = p->baseline_ms[r];
        /* a window not yet full would judge on a few queries */
        in.p99_ms[r] = p->window_filled >= 2 ? p->p99_ms[r] : 0;
        in.samples[r] = p->window_filled >= 2 ? p->samples[r] : 0;
    }
    double decided = p->ctl.last_ms;
    enum budget_event ev = budget_decide(&p->ctl, &in, now);
    if (ev == BUDGET_APP_SLOW) {
        for (int r = 0; r < LATENCY_ROUTES; r++)
            if (p->ctl.app_slow_ms[r] > 0)
                p->baseline_ms[r] = p->ctl.app_slow_ms[r];
        budget_quiet_reset(b);
    } else if (p->ctl.last_ms != decided && (p->ctl.state == BUDGET_UNDER || p->ctl.state == BUDGET_IDLE)) {
        budget_quiet_reset(b); /* within its budget: what was quiet so far has nothing to tell */
    }
    budget_log(b, ev);
    if (p->ctl.state == BUDGET_OVER || (p->ctl.engaged && p->ctl.reason[0])) {
        if (p->ctl.state == BUDGET_OVER)
            b->throttle_kind = "app_latency";
        snprintf(b->throttle_reason, sizeof b->throttle_reason, "%s", p->ctl.reason);
    }
    return 0;
}

static json_t *per_route(const double *v)
{
    json_t *o = json_object();
    for (int r = 0; r < LATENCY_ROUTES; r++)
        json_object_set_new(o, route_words[r], v[r] > 0 ? json_real(v[r]) : json_null());
    return o;
}

/* The throttle object's "budget": which budget it keeps, what it measures. */
static json_t *budget_json(const struct bf_runner *b)
{
    const struct bf_budget_probe *p = &b->budget;
    const struct budget *c = &p->ctl;
    const struct throttle_settings *t = b->thr;
    enum budget_kind kind = t->max_app_p99_ms > 0 ? BUDGET_ABSOLUTE : t->app_p99_budget > 0 ? BUDGET_RATIO : BUDGET_OFF;
    double p99[LATENCY_ROUTES], samples[LATENCY_ROUTES], limit[LATENCY_ROUTES];
    for (int r = 0; r < LATENCY_ROUTES; r++) {
        limit[r] = budget_limit_ms(t->app_p99_budget, (double)t->max_app_p99_ms, (double)t->app_p99_floor_ms,
                                   p->baseline_ms[r]);
        p99[r] = p->samples[r] > 0 ? p->p99_ms[r] : 0;
        samples[r] = (double)p->samples[r];
    }
    json_t *o = json_pack("{s:s,s:f,s:I,s:o,s:o,s:o,s:s,s:b,s:i,s:f,s:b,s:i,s:b}", "kind", budget_kind_word(kind),
                          "ratio", t->app_p99_budget, "max_app_p99_ms", (json_int_t)t->max_app_p99_ms,
                          "baseline_p99_ms", per_route(p->baseline_ms), "limit_ms", per_route(limit), "p99_ms",
                          per_route(p99), "state", budget_state_word(c->state), "engaged", c->engaged, "engagements",
                          c->engagements, "pause_ms", c->pause_ms, "starved", c->starved, "workers", c->workers,
                          "measuring", p->measure);
    json_t *n = json_object();
    for (int r = 0; r < LATENCY_ROUTES; r++)
        json_object_set_new(n, route_words[r], json_integer((json_int_t)samples[r]));
    json_object_set_new(o, "window_queries", n);
    json_object_set_new(o, "batch_cap", c->batch_cap > 0 ? json_integer(c->batch_cap) : json_null());
    json_object_set_new(o, "starved_rows_per_s", c->starved ? json_real(c->starved_rate) : json_null());
    json_object_set_new(o, "reason", c->reason[0] ? json_string(c->reason) : json_null());
    return o;
}

void bf_runner_budget(const struct bf_runner *b, struct bf_budget_report *out)
{
    const struct bf_budget_probe *p = &b->budget;
    memset(out, 0, sizeof *out);
    long abs_ms = b->thr ? b->thr->max_app_p99_ms : 0;
    double ratio = b->thr ? b->thr->app_p99_budget : 0;
    double floor_ms = b->thr ? (double)b->thr->app_p99_floor_ms : 0;
    out->kind = budget_kind_word(abs_ms > 0 ? BUDGET_ABSOLUTE : ratio > 0 ? BUDGET_RATIO : BUDGET_OFF);
    out->engaged = b->running && p->ctl.engaged;
    out->starved = b->running && p->ctl.starved;
    for (int r = 0; r < LATENCY_ROUTES; r++) {
        out->baseline_ms[r] = p->baseline_ms[r];
        out->limit_ms[r] = budget_limit_ms(ratio, (double)abs_ms, floor_ms, p->baseline_ms[r]);
        out->p99_ms[r] = p->samples[r] > 0 ? p->p99_ms[r] : 0;
    }
}

static int throttled(const struct bf_runner *b, double now)
{
    return b->throttle_kind || b->thr->max_rows_per_sec > 0 || b->thr->sleep_ratio > 0.0 ||
           now - b->lock_wait_ms < BACKFILL_LOCK_HOLD_MS;
}

static void on_lag(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)sqlstate;
    struct bf_runner *b = ctx;
    b->lanes[0].busy = 0;
    if (!b->running)
        return;
    b->lag_checked_ms = clock_now_ms();
    if (!error && res && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
        b->replica_lag_ms = atof(PQgetvalue(res, 0, 0));
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
        mig_str_addf(&s, "%s; %s; %s", MIG_STATE_SESSION_SQL, session, BACKFILL_WORKER_LOCK_SQL);
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
        budget_batches_changed(b);
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
    budget_batches_changed(b);
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
    /* the budget decides on its window while batches are held back too,
     * and a quiet moment begins on time */
    if (b->budget.ctl.engaged)
        soonest = soonest < 0 || BUDGET_EVAL_MS < soonest ? BUDGET_EVAL_MS : soonest;
    double quiet_in = b->budget.quiet_at_ms - now;
    if (b->budget.ctl.engaged && b->budget.quiet_at_ms > 0 && quiet_in > 0)
        soonest = soonest < 0 || quiet_in < soonest ? quiet_in : soonest;
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
    const char *values[6];
    const char *bounds = !error && res && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0) ? PQgetvalue(res, 0, 0) : NULL;
    backfill_ranges_create_params(t, b->name, bounds, n, est, values, num, sizeof num);
    if (pgasync_send(b->lanes[0].conn, BACKFILL_RANGES_CREATE_SQL, 6, values, on_created, b) != 0)
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
    /* a baseline before the first batch; the decisions start afresh */
    memset(&b->budget.ctl, 0, sizeof b->budget.ctl);
    b->budget.window_filled = 0;
    b->budget.measure = 0;
    b->budget.measure_from_ms = 0;
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
    if (pgasync_send(db, BACKFILL_WORKERS_GONE_SQL, 0, NULL, on_workers_gone, b) != 0)
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
    b->replica_lag_ms = b->lag_checked_ms = 0;
    b->started_ms = b->finished_ms = 0;
    b->rows_at_start = 0;
    memset(&b->budget, 0, sizeof b->budget);
}

void bf_runner_free(struct bf_runner *b)
{
    bf_runner_reset(b);
    if (b->timer)
        event_free(b->timer);
    b->timer = NULL;
}

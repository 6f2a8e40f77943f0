/* The latency budget as the backfill runner measures and applies it (see
 * backfill_runner_budget.h). */
#include "backfill_runner_budget.h"

#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "relay_control.h"

static const char *const route_words[LATENCY_ROUTES] = {"old", "new"};

/* Measuring the application's p99 without the backfill: this long with no
 * batch in flight, or this short when no query came at all. */
#define BASELINE_MS 1000.0
#define BASELINE_QUIET_MS 300.0
/* Or as soon as this many queries ended, BASELINE_QUIET_MS at least: a p99
 * with two queries above it. A busy app's p99 is known well before a
 * second, and every millisecond of the measurement is one the backfill
 * does not run (a third of a 300,000-row backfill's time beside a fast
 * app). */
#define BASELINE_ENOUGH 200
/* Measured again this often while a ratio is kept (the app's own load
 * moves), or, with no baseline yet, once the app has traffic. */
#define BASELINE_EVERY_MS 60000.0
#define BASELINE_RETRY_MS 10000.0

/* How long to wait before the baseline's measurement looks again, having
 * taken `took` ms and seen `seen` queries: until BASELINE_ENOUGH at the
 * rate seen (10 ms at least), BASELINE_QUIET_MS, or BASELINE_MS. */
static double baseline_wait(double took, uint64_t seen)
{
    if (seen == 0)
        return BASELINE_QUIET_MS - took;
    if (took < BASELINE_QUIET_MS)
        return BASELINE_QUIET_MS - took;
    double need = (double)(BASELINE_ENOUGH - seen) * took / (double)seen;
    need = need < 10.0 ? 10.0 : need;
    return need < BASELINE_MS - took ? need : BASELINE_MS - took;
}

static int budget_wants_baseline(const struct bf_budget_probe *p, double now)
{
    if (p->thr->app_p99_budget <= 0 || p->thr->max_app_p99_ms > 0)
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

static void budget_read(const struct bf_budget_probe *p, struct latency_fine *out)
{
    for (int r = 0; r < LATENCY_ROUTES; r++)
        relay_latency_read(p->relay, r, &out[r]);
}

/* A batch started or ended: the moments with none in flight are summed
 * into `quiet`, what the app's latency is without the backfill now. A
 * query is counted when it ends, and those a batch held end just after
 * it: a moment begins only a grace after the last batch (the budget's
 * limit: a held query still running then was slow by itself), read by
 * budget_quiet_poll at the next turn of the runner. */
void bf_budget_batches_changed(struct bf_budget_probe *p, int busy)
{
    if (!busy) {
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
    budget_read(p, now);
    for (int r = 0; r < LATENCY_ROUTES; r++)
        for (int i = 0; i <= LATENCY_FINE_BUCKETS; i++)
            p->quiet[r].counts[i] += now[r].counts[i] - p->quiet_from[r].counts[i];
    p->quiet_open = 0;
}

/* The grace after the last batch has passed: the quiet moment begins. */
static void budget_quiet_poll(struct bf_budget_probe *p, double now, int busy)
{
    if (p->quiet_open || p->quiet_at_ms <= 0 || now < p->quiet_at_ms || busy)
        return;
    budget_read(p, p->quiet_from);
    p->quiet_open = 1;
    p->quiet_at_ms = 0;
}

/* The quiet moments' p99 per route, the one still open counted to now. */
static void budget_quiet(struct bf_budget_probe *p, double *p99, uint64_t *n)
{
    struct latency_fine sum[LATENCY_ROUTES];
    memcpy(sum, p->quiet, sizeof sum);
    if (p->quiet_open) {
        struct latency_fine now[LATENCY_ROUTES];
        budget_read(p, now);
        for (int r = 0; r < LATENCY_ROUTES; r++)
            for (int i = 0; i <= LATENCY_FINE_BUCKETS; i++)
                sum[r].counts[i] += now[r].counts[i] - p->quiet_from[r].counts[i];
    }
    for (int r = 0; r < LATENCY_ROUTES; r++)
        p99[r] = latency_fine_quantile_ms(&sum[r], NULL, 0.99, &n[r]);
}

/* Forgets the quiet moments so far (the next judgement starts afresh). */
static void budget_quiet_reset(struct bf_budget_probe *p)
{
    memset(p->quiet, 0, sizeof p->quiet);
    if (p->quiet_open)
        budget_read(p, p->quiet_from);
}

/* The window's p99 per route, a reading every BUDGET_EVAL_MS. */
static void budget_window(struct bf_budget_probe *p, double now)
{
    if (p->window_filled && now - p->window_ms < BUDGET_EVAL_MS)
        return;
    p->window_ms = now;
    budget_read(p, p->window[p->window_next]);
    int oldest = p->window_filled >= BF_BUDGET_WINDOW ? (p->window_next + 1) % (BF_BUDGET_WINDOW + 1) : 0;
    for (int r = 0; r < LATENCY_ROUTES; r++)
        p->p99_ms[r] = latency_fine_quantile_ms(&p->window[p->window_next][r], &p->window[oldest][r], 0.99,
                                                &p->samples[r]);
    p->window_next = (p->window_next + 1) % (BF_BUDGET_WINDOW + 1);
    if (p->window_filled < BF_BUDGET_WINDOW)
        p->window_filled++;
}

/* The gentle start's first batch: min_rows; but when every route measured
 * is faster than the floor (its limit is the floor), the batch the sizing
 * starts with (batch_rows, a few milliseconds of rows): the floor says
 * such an app does not feel that much, and climbing to it from min_rows
 * took decisions of a backfill that may last two seconds in all. */
static long gentle_rows(const struct bf_budget_probe *p, const struct bf_budget_facts *t)
{
    const struct throttle_settings *thr = p->thr;
    int measured = 0;
    for (int r = 0; r < LATENCY_ROUTES; r++) {
        if (p->baseline_ms[r] <= 0)
            continue;
        measured = 1;
        if (thr->app_p99_floor_ms <= 0 ||
            budget_limit_ms(thr->app_p99_budget, (double)thr->max_app_p99_ms, (double)thr->app_p99_floor_ms,
                            p->baseline_ms[r]) > (double)thr->app_p99_floor_ms)
            return t->min_rows;
    }
    return measured && t->batch_rows > t->min_rows ? t->batch_rows : t->min_rows;
}

static void budget_measured(struct bf_budget_probe *p, double now, const struct bf_budget_facts *t)
{
    struct latency_fine cur[LATENCY_ROUTES];
    budget_read(p, cur);
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
        budget_start_gently(&p->ctl, gentle_rows(p, t));
        log_info("migration %s: latency budget engaged: the backfill starts gently (one worker, batches of %ld rows) "
                 "and climbs while the app stays within its budget", p->name, p->ctl.batch_cap);
    }
    if (n)
        log_info("migration %s: the app's p99 without the backfill: %s; the backfill keeps it within %.2g x", p->name,
                 said, p->thr->app_p99_budget);
    else if (p->baseline_at_ms <= 0)
        log_info("migration %s: no app traffic through this proxy to measure a latency baseline on; the budget "
                 "(%.2g x) holds once there is", p->name, p->thr->app_p99_budget);
    p->baseline_at_ms = now;
    p->measure = 0;
    p->measure_from_ms = 0;
    p->window_filled = 0; /* the window starts again, without the pause in it */
    p->window_next = 0;
}

static void budget_log(struct bf_budget_probe *p, enum budget_event ev)
{
    const struct budget *c = &p->ctl;
    switch (ev) {
    case BUDGET_ENGAGED:
        log_info("migration %s: latency budget engaged: %s; %d worker%s, batches of at most %ld rows, %.0f ms apart",
                 p->name, c->reason, c->workers, c->workers == 1 ? "" : "s", c->batch_cap, c->pause_ms);
        break;
    case BUDGET_RELEASED:
        log_info("migration %s: latency budget released: the app's p99 is within %.1f ms again; the backfill is "
                 "back to full speed", p->name, c->limit_ms[c->route]);
        break;
    case BUDGET_STARVED:
        log_warn("migration %s: the backfill cannot keep the app within its latency budget even at its smallest "
                 "batches and longest pauses: %s; it goes on at %.0f rows/s (widen the budget live: "
                 "migrate throttle app_p99_budget=N, or max_app_p99_ms=N)", p->name, c->reason, c->starved_rate);
        break;
    case BUDGET_UNSTARVED:
        log_info("migration %s: the app is within its latency budget again", p->name);
        break;
    case BUDGET_APP_SLOW:
        log_info("migration %s: latency budget: the app's p99 is over its budget while no batch is in flight too "
                 "(old release %.1f ms, new release %.1f ms; 0: that route is not): it is slow by itself, so that is "
                 "its baseline now", p->name, c->app_slow_ms[0], c->app_slow_ms[1]);
        break;
    case BUDGET_NOTHING:
        break;
    }
}

double bf_budget_step(struct bf_budget_probe *p, double now, const struct bf_budget_facts *t, char *reason,
                      size_t reason_cap, const char **kind)
{
    if (!p->measure && budget_wants_baseline(p, now))
        p->measure = 1;
    if (p->measure) {
        snprintf(reason, reason_cap, "measuring the app's p99 without the backfill");
        if (t->busy)
            return BF_RUNNER_HOLD_MS; /* the batches in flight end first; each end ticks */
        if (p->measure_from_ms <= 0) {
            p->measure_from_ms = now;
            budget_read(p, p->measure_base);
        }
        double took = now - p->measure_from_ms;
        uint64_t seen = 0;
        struct latency_fine cur;
        for (int r = 0; r < LATENCY_ROUTES; r++) {
            relay_latency_read(p->relay, r, &cur);
            uint64_t k = 0;
            latency_fine_quantile_ms(&cur, &p->measure_base[r], 0.99, &k);
            seen += k;
        }
        if (took < BASELINE_MS && (seen > 0 || took < BASELINE_QUIET_MS) &&
            (seen < BASELINE_ENOUGH || took < BASELINE_QUIET_MS))
            return baseline_wait(took, seen);
        budget_measured(p, now, t);
        reason[0] = '\0';
    }
    budget_window(p, now);
    struct budget_input in = {
        .ratio = p->thr->app_p99_budget, .absolute_ms = (double)p->thr->max_app_p99_ms,
        .batch_rows = t->batch_rows, .min_rows = t->min_rows, .max_rows = t->max_rows,
        .wanted_workers = (int)p->thr->workers, .rows_done = t->rows_done};
    in.floor_ms = (double)p->thr->app_p99_floor_ms;
    budget_quiet_poll(p, now, t->busy);
    budget_quiet(p, in.quiet_p99_ms, in.quiet_samples);
    for (int r = 0; r < LATENCY_ROUTES; r++) {
        in.baseline_ms[r] = p->baseline_ms[r];
        /* a window not yet full would judge on a few queries */
        in.p99_ms[r] = p->window_filled >= 2 ? p->p99_ms[r] : 0;
        in.samples[r] = p->window_filled >= 2 ? p->samples[r] : 0;
    }
    double decided = p->ctl.last_ms;
    /* After a tightening the window starts afresh and the next decision
     * waits until it is full again: its older readings are of the batches
     * before the tightening, and judged again they tightened again for what
     * was already answered (one second worker's excursion over a fast app's
     * budget halved its batches four times and took the pause to 160 ms, a
     * second with almost nothing written). */
    enum budget_event ev = BUDGET_NOTHING;
    if (!p->settling || p->window_filled >= BF_BUDGET_WINDOW) {
        p->settling = 0;
        ev = budget_decide(&p->ctl, &in, now);
        if (p->ctl.last_ms != decided && p->ctl.state == BUDGET_OVER && ev != BUDGET_APP_SLOW) {
            p->settling = 1;
            p->window_filled = 0;
            p->window_next = 0;
        }
    }
    if (ev == BUDGET_APP_SLOW) {
        for (int r = 0; r < LATENCY_ROUTES; r++)
            if (p->ctl.app_slow_ms[r] > 0)
                p->baseline_ms[r] = p->ctl.app_slow_ms[r];
        budget_quiet_reset(p);
    } else if (p->ctl.last_ms != decided && (p->ctl.state == BUDGET_UNDER || p->ctl.state == BUDGET_IDLE)) {
        budget_quiet_reset(p); /* within its budget: what was quiet so far has nothing to tell */
    }
    budget_log(p, ev);
    if (p->ctl.state == BUDGET_OVER || (p->ctl.engaged && p->ctl.reason[0])) {
        if (p->ctl.state == BUDGET_OVER)
            *kind = BF_BUDGET_KIND;
        snprintf(reason, reason_cap, "%s", p->ctl.reason);
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
/* The budget the settings ask for now, and a route's limit under them. */
static enum budget_kind kind_now(const struct throttle_settings *t)
{
    return t->max_app_p99_ms > 0 ? BUDGET_ABSOLUTE : t->app_p99_budget > 0 ? BUDGET_RATIO : BUDGET_OFF;
}

static double limit_now(const struct bf_budget_probe *p, int route)
{
    const struct throttle_settings *t = p->thr;
    return budget_limit_ms(t->app_p99_budget, (double)t->max_app_p99_ms, (double)t->app_p99_floor_ms,
                           p->baseline_ms[route]);
}

json_t *bf_budget_json(const struct bf_budget_probe *p)
{
    const struct budget *c = &p->ctl;
    const struct throttle_settings *t = p->thr;
    double p99[LATENCY_ROUTES], samples[LATENCY_ROUTES], limit[LATENCY_ROUTES];
    for (int r = 0; r < LATENCY_ROUTES; r++) {
        limit[r] = limit_now(p, r);
        p99[r] = p->samples[r] > 0 ? p->p99_ms[r] : 0;
        samples[r] = (double)p->samples[r];
    }
    json_t *o = json_pack("{s:s,s:f,s:I,s:o,s:o,s:o,s:s,s:b,s:i,s:f,s:b,s:i,s:b}", "kind", budget_kind_word(kind_now(t)),
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

void bf_budget_report(const struct bf_budget_probe *p, int running, struct bf_budget_report *out)
{
    memset(out, 0, sizeof *out);
    out->kind = budget_kind_word(p->thr ? kind_now(p->thr) : BUDGET_OFF);
    out->engaged = running && p->ctl.engaged;
    out->starved = running && p->ctl.starved;
    for (int r = 0; r < LATENCY_ROUTES; r++) {
        out->baseline_ms[r] = p->baseline_ms[r];
        out->limit_ms[r] = p->thr ? limit_now(p, r) : 0;
        out->p99_ms[r] = p->samples[r] > 0 ? p->p99_ms[r] : 0;
    }
}

void bf_budget_init(struct bf_budget_probe *p, struct relay *relay, const struct throttle_settings *thr)
{
    memset(p, 0, sizeof *p);
    p->relay = relay;
    p->thr = thr;
}

void bf_budget_restart(struct bf_budget_probe *p, const char *name)
{
    p->name = name;
    memset(&p->ctl, 0, sizeof p->ctl);
    p->window_filled = 0;
    p->window_next = 0;
    p->settling = 0;
    p->measure = 0;
    p->measure_from_ms = 0;
    memset(p->quiet, 0, sizeof p->quiet);
    p->quiet_open = 0;
    p->quiet_at_ms = 0;
}

/* It decides on its window while batches are held back too, and a quiet
 * moment begins on time. */
double bf_budget_wake_in(const struct bf_budget_probe *p, double now)
{
    if (!p->ctl.engaged)
        return -1;
    double quiet_in = p->quiet_at_ms - now;
    return p->quiet_at_ms > 0 && quiet_in > 0 && quiet_in < BUDGET_EVAL_MS ? quiet_in : BUDGET_EVAL_MS;
}

/* The backfill's latency budget: its decisions (see backfill_budget.h). */
#include "backfill_budget.h"

#include <stdio.h>
#include <string.h>

const char *budget_kind_word(enum budget_kind k)
{
    return k == BUDGET_RATIO ? "ratio" : k == BUDGET_ABSOLUTE ? "absolute" : "off";
}

const char *budget_state_word(enum budget_state s)
{
    static const char *const words[] = {"idle", "under", "near", "over"};
    return words[s];
}

long budget_batch_rows(const struct budget *b, long rows)
{
    return b->batch_cap > 0 && rows > b->batch_cap ? b->batch_cap : rows;
}

void budget_start_gently(struct budget *b, long min_rows)
{
    b->batch_cap = min_rows > 0 ? min_rows : 1;
    b->workers = 1;
    b->engaged = 1;
    b->engagements++;
}

double budget_limit_ms(double ratio, double absolute_ms, double floor_ms, double baseline_ms)
{
    if (absolute_ms > 0)
        return absolute_ms;
    if (ratio <= 0 || baseline_ms <= 0)
        return 0;
    double limit = baseline_ms * ratio > baseline_ms + BUDGET_SLACK_MS ? baseline_ms * ratio
                                                                       : baseline_ms + BUDGET_SLACK_MS;
    return limit > floor_ms ? limit : floor_ms;
}

static void limits(struct budget *b, const struct budget_input *in)
{
    b->kind = in->absolute_ms > 0 ? BUDGET_ABSOLUTE : in->ratio > 0 ? BUDGET_RATIO : BUDGET_OFF;
    for (int r = 0; r < BUDGET_ROUTES; r++)
        b->limit_ms[r] = budget_limit_ms(in->ratio, in->absolute_ms, in->floor_ms, in->baseline_ms[r]);
}

/* Over a ratio's budget: is the app as slow while no batch is in flight?
 * Then it is slow by itself, and app_slow_ms says its p99 so. */
static int slow_by_itself(struct budget *b, const struct budget_input *in)
{
    int any = 0;
    for (int r = 0; r < BUDGET_ROUTES; r++) {
        b->app_slow_ms[r] = 0;
        if (b->kind != BUDGET_RATIO || b->limit_ms[r] <= 0 || in->quiet_samples[r] < BUDGET_MIN_SAMPLES ||
            in->quiet_p99_ms[r] <= b->limit_ms[r])
            continue;
        b->app_slow_ms[r] = in->quiet_p99_ms[r];
        any = 1;
    }
    return any;
}

/* The state from the routes that have a limit and traffic. */
static enum budget_state measure(struct budget *b, const struct budget_input *in)
{
    b->pressure = 0;
    int seen = 0;
    for (int r = 0; r < BUDGET_ROUTES; r++) {
        if (b->limit_ms[r] <= 0 || in->samples[r] < BUDGET_MIN_SAMPLES)
            continue;
        double p = in->p99_ms[r] / b->limit_ms[r];
        if (!seen++ || p > b->pressure) {
            b->pressure = p;
            b->route = r;
        }
    }
    if (!seen)
        return BUDGET_IDLE;
    return b->pressure > 1.0 ? BUDGET_OVER : b->pressure > BUDGET_ROOM ? BUDGET_NEAR : BUDGET_UNDER;
}

static void say_over(struct budget *b, const struct budget_input *in)
{
    int r = b->route;
    const char *route = r == 0 ? "old release" : "new release";
    char budget[96];
    if (b->kind == BUDGET_ABSOLUTE)
        snprintf(budget, sizeof budget, "max_app_p99_ms");
    else
        snprintf(budget, sizeof budget, "%.2g x baseline %.1f ms", in->ratio, in->baseline_ms[r]);
    int n = snprintf(b->reason, sizeof b->reason, "app p99 %.1f ms > budget %.1f ms (%s, %s)", in->p99_ms[r],
                     b->limit_ms[r], budget, route);
    if (b->starved && n > 0 && (size_t)n < sizeof b->reason)
        snprintf(b->reason + n, sizeof b->reason - (size_t)n, "; over it at the smallest batches: %.0f rows/s",
                 b->starved_rate);
}

/* The limit of the route judged is the floor: an app faster than it. */
static int floor_binds(const struct budget *b, const struct budget_input *in)
{
    return b->kind == BUDGET_RATIO && in->floor_ms > 0 && b->limit_ms[b->route] <= in->floor_ms;
}

/* The next batch cap under the budget: half as large again; but while the
 * floor is the limit (an app faster than it) and the app's p99 is under
 * half of it, by the room left, up to BUDGET_CLIMB_MAX times: a 1.5 ms p99
 * against a 5 ms floor is noise nobody sees, and climbing from the gentle
 * start's smallest batch half as large again every decision took seconds,
 * longer than a whole backfill of a few hundred thousand rows. */
static long climb(const struct budget *b, const struct budget_input *in)
{
    long up = b->batch_cap + b->batch_cap / 2 + 1;
    if (b->state != BUDGET_UNDER || !floor_binds(b, in) || b->pressure >= BUDGET_WIDE_ROOM)
        return up;
    double by = b->pressure > 0 ? BUDGET_ROOM / b->pressure : BUDGET_CLIMB_MAX;
    by = by > BUDGET_CLIMB_MAX ? BUDGET_CLIMB_MAX : by;
    long wide = (long)((double)b->batch_cap * by);
    return wide > up ? wide : up;
}

/* Over the budget lately with more workers than one (at its smallest
 * batches, when the floor binds): the climb stops a worker short of that
 * count for BUDGET_CROWD_HOLD_MS. Climbing straight back to the count that
 * was over only goes over again, and every time over halves the batches
 * and doubles the pause. */
static int crowded(const struct budget *b, double now_ms)
{
    return b->crowd_workers > 1 && b->workers + 1 >= b->crowd_workers &&
           now_ms - b->crowd_ms < BUDGET_CROWD_HOLD_MS;
}

enum budget_event budget_decide(struct budget *b, const struct budget_input *in, double now_ms)
{
    if (b->last_ms > 0 && now_ms - b->last_ms < BUDGET_EVAL_MS)
        return BUDGET_NOTHING;
    b->last_ms = now_ms;
    int wanted = in->wanted_workers < 1 ? 1 : in->wanted_workers;
    if (b->workers < 1 || b->workers > wanted)
        b->workers = wanted;
    limits(b, in);
    b->state = b->kind == BUDGET_OFF ? BUDGET_IDLE : measure(b, in);
    if (b->state != BUDGET_IDLE)
        b->idle_since_ms = 0;
    enum budget_event ev = BUDGET_NOTHING;
    if (b->state == BUDGET_OVER && slow_by_itself(b, in)) {
        /* held, not tightened: the limits move with the new baseline */
        snprintf(b->reason, sizeof b->reason, "the app's p99 is %.1f ms without the backfill too: taken as its "
                 "baseline", b->app_slow_ms[b->route] > 0 ? b->app_slow_ms[b->route] : in->p99_ms[b->route]);
        return BUDGET_APP_SLOW;
    }
    if (b->state == BUDGET_OVER) {
        long from = b->batch_cap > 0 ? b->batch_cap : in->batch_rows;
        /* Over a floor that binds, the app's tail is the rows a batch
         * holds locked and how long: a batch half as large halves both.
         * One worker and a pause cost the backfill far more than they spare
         * such an app (a 5 ms-tick client beside two workers of 5 ms
         * batches kept its p99 at 2-3 ms, at 0.5-0.7x the unthrottled
         * rate), so they wait until the batches are at their smallest. */
        int shrink_only = floor_binds(b, in) && from > in->min_rows;
        b->batch_cap = from / 2 > in->min_rows ? from / 2 : in->min_rows;
        if (!shrink_only) {
            b->pause_ms = b->pause_ms < BUDGET_PAUSE_MIN_MS ? BUDGET_PAUSE_MIN_MS
                          : b->pause_ms * 2 > BUDGET_PAUSE_MAX_MS ? BUDGET_PAUSE_MAX_MS : b->pause_ms * 2;
            if (b->workers > 1) {
                b->crowd_workers = b->workers;
                b->crowd_ms = now_ms;
            }
            b->workers = 1;
        }
        if (!b->engaged) {
            b->engaged = 1;
            b->engagements++;
            ev = BUDGET_ENGAGED;
        }
        int at_floor = b->batch_cap <= in->min_rows && b->pause_ms >= BUDGET_PAUSE_MAX_MS;
        if (!at_floor) {
            b->floor_since_ms = 0;
        } else if (b->floor_since_ms <= 0) {
            b->floor_since_ms = now_ms;
            b->floor_rows = in->rows_done;
        } else if (now_ms - b->floor_since_ms >= BUDGET_STARVED_MS) {
            b->starved_rate = (double)(in->rows_done - b->floor_rows) * 1000.0 / (now_ms - b->floor_since_ms);
            if (!b->starved && ev == BUDGET_NOTHING)
                ev = BUDGET_STARVED;
            b->starved = 1;
        }
        say_over(b, in);
        return ev;
    }
    b->floor_since_ms = 0;
    if (b->state == BUDGET_IDLE && b->engaged && b->kind != BUDGET_OFF) {
        if (b->idle_since_ms <= 0)
            b->idle_since_ms = now_ms;
        if (now_ms - b->idle_since_ms < BUDGET_IDLE_HOLD_MS) {
            snprintf(b->reason, sizeof b->reason, "too few queries to judge the app's p99: holding");
            return BUDGET_NOTHING;
        }
    }
    if (b->state == BUDGET_NEAR) {
        b->reason[0] = '\0';
        if (b->engaged)
            snprintf(b->reason, sizeof b->reason, "app p99 %.1f ms near its budget %.1f ms: holding",
                     in->p99_ms[b->route], b->limit_ms[b->route]);
        return BUDGET_NOTHING;
    }
    /* under, or nothing to keep: one step back towards full speed */
    if (b->starved) {
        b->starved = 0;
        ev = BUDGET_UNSTARVED;
    }
    b->pause_ms = b->pause_ms / 2 < BUDGET_PAUSE_MIN_MS ? 0 : b->pause_ms / 2;
    if (b->batch_cap > 0) {
        long up = climb(b, in);
        b->batch_cap = up >= in->max_rows ? 0 : up;
    }
    /* under a floor that binds the batches' length is what the app feels
     * (above): the workers climb beside a cap, not after it */
    int beside = b->state == BUDGET_UNDER && floor_binds(b, in);
    if ((b->batch_cap == 0 || beside) && b->pause_ms == 0 && b->workers < wanted && !crowded(b, now_ms))
        b->workers++;
    b->reason[0] = '\0';
    if (b->engaged && b->batch_cap == 0 && b->pause_ms == 0 && b->workers >= wanted) {
        b->engaged = 0;
        if (ev == BUDGET_NOTHING)
            ev = BUDGET_RELEASED;
    }
    return ev;
}

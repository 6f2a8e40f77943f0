/* One latency budget over the backfills of the starts beside the migration
 * in flight (runner_beside.c). They run on engines of their own in
 * threads, over blocking libpq (backfill_drive.c), where the app's latency
 * is not seen; the proxy's loop sees it. So the loop keeps the budget the
 * proxy keeps over its own backfill (backfill_runner_budget.h: the app's
 * p99 per route from the relay, a baseline measured with every batch held,
 * the decisions of engine/backfill_budget.c) and hands its batch cap,
 * pause and workers to every drive through one struct backfill_pace. Those
 * drives and the proxy's own backfill run one after the other: a start
 * beside expands under the engine lock, which the proxy's own backfill
 * holds until it ends. Several starts beside backfill at once under the
 * one budget: their batches are summed, their caps shared. */
#include "runner_internal.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>

#include "backfill_drive.h"
#include "backfill_runner_budget.h"
#include "clock.h"

/* How often the loop reads the drives and decides: under the budget's own
 * window (BUDGET_EVAL_MS), so a decision is never late by more than this. */
#define BESIDE_BUDGET_TICK_MS 100

struct beside_budget {
    struct backfill_pace pace;       /* read by the threads */
    struct bf_budget_probe probe;    /* the loop's alone */
    struct event *tick;
    int running;                     /* a drive ran at the last tick */
    int busy;                        /* a batch was in flight at the last tick (-1: unknown) */
    char reason[256];
    char name[128];                  /* the newest start beside, for the log */
};

static void publish(struct beside_budget *bb, double hold_until, const struct budget *ctl)
{
    atomic_store(&bb->pace.hold_until_ms, (long long)hold_until);
    atomic_store(&bb->pace.workers, ctl ? ctl->workers : 0);
    atomic_store(&bb->pace.batch_cap, ctl ? ctl->batch_cap : 0);
    atomic_store(&bb->pace.pause_ms, ctl ? (int)ctl->pause_ms : 0);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct beside_budget *bb = arg;
    double now = clock_now_ms();
    if (atomic_load(&bb->pace.running) <= 0) {
        if (bb->running)
            publish(bb, 0, NULL);
        bb->running = 0;
        return;
    }
    if (!bb->running) {
        bf_budget_restart(&bb->probe, bb->name);
        bb->running = 1;
        bb->busy = -1;
    }
    int busy = atomic_load(&bb->pace.in_flight) > 0;
    if (busy != bb->busy)
        bf_budget_batches_changed(&bb->probe, busy);
    bb->busy = busy;
    long min_rows = atomic_load(&bb->pace.min_rows);
    struct bf_budget_facts f = {.batch_rows = atomic_load(&bb->pace.batch_rows),
                                .min_rows = min_rows > 0 ? min_rows : 1, .max_rows = atomic_load(&bb->pace.max_rows),
                                .rows_done = atomic_load(&bb->pace.rows_done), .busy = busy};
    const char *kind = NULL;
    double hold = bf_budget_step(&bb->probe, now, &f, bb->reason, sizeof bb->reason, &kind);
    publish(bb, hold > 0 ? now + hold : 0, &bb->probe.ctl);
}

struct backfill_pace *beside_budget_pace(struct migration_runner *r, const char *name)
{
    struct beside_budget *bb = r->beside_budget;
    if (bb) {
        if (!bb->running)
            snprintf(bb->name, sizeof bb->name, "%s", name);
        return &bb->pace;
    }
    bb = calloc(1, sizeof *bb);
    if (!bb)
        return NULL;
    snprintf(bb->name, sizeof bb->name, "%s", name);
    bb->tick = event_new(r->base, -1, EV_PERSIST, on_tick, bb);
    struct timeval every = {0, BESIDE_BUDGET_TICK_MS * 1000};
    if (!bb->tick || event_add(bb->tick, &every) != 0) {
        if (bb->tick)
            event_free(bb->tick);
        free(bb);
        return NULL;
    }
    bf_budget_init(&bb->probe, r->relay, &r->thr);
    r->beside_budget = bb;
    return &bb->pace;
}

json_t *beside_budget_json(const struct migration_runner *r)
{
    const struct beside_budget *bb = r->beside_budget;
    if (!bb || atomic_load(&bb->pace.running) <= 0)
        return json_null();
    json_t *out = bf_budget_json(&bb->probe);
    if (out) {
        json_object_set_new(out, "drives", json_integer(atomic_load(&bb->pace.running)));
        json_object_set_new(out, "batches_in_flight", json_integer(atomic_load(&bb->pace.in_flight)));
        json_object_set_new(out, "rows_done", json_integer(atomic_load(&bb->pace.rows_done)));
        json_object_set_new(out, "holding", bb->reason[0] ? json_string(bb->reason) : json_null());
    }
    return out;
}

void beside_budget_free(struct migration_runner *r)
{
    struct beside_budget *bb = r->beside_budget;
    if (!bb)
        return;
    event_free(bb->tick);
    free(bb);
    r->beside_budget = NULL;
}

/* The latency budget as the backfill runner measures and applies it
 * (backfill_budget.h decides, with no I/O): the app's p99 per route read
 * from the relay in windows, the baseline without the backfill measured
 * in a pause, the moments with no batch in flight summed apart, and the
 * decision's batch cap, pause and workers handed to the runner, which
 * holds a struct bf_budget_probe and tells it what its batches do. */
#ifndef PGTANDEM_BACKFILL_RUNNER_BUDGET_H
#define PGTANDEM_BACKFILL_RUNNER_BUDGET_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "backfill_budget.h"
#include "metrics.h"
#include "settings.h"

struct relay;

/* Paused, a replica lagging, a baseline being measured: look again after this. */
#define BF_RUNNER_HOLD_MS 500.0

/* The latency budget's readings, for the status, the metrics and the log. */
#define BF_BUDGET_WINDOW 4 /* the p99 it keeps is over this many BUDGET_EVAL_MS */
struct bf_budget_probe {
    struct budget ctl;                                 /* the decisions */
    struct latency_fine window[BF_BUDGET_WINDOW + 1][LATENCY_ROUTES]; /* readings, a ring */
    int window_next, window_filled;
    int settling;                                      /* tightened: no decision until the window is full again */
    double window_ms;                                  /* the last reading */
    double p99_ms[LATENCY_ROUTES];                     /* over the window */
    uint64_t samples[LATENCY_ROUTES];
    double baseline_ms[LATENCY_ROUTES];                /* without the backfill (0: none yet) */
    uint64_t baseline_samples[LATENCY_ROUTES];
    double baseline_at_ms;                             /* the last measurement's end (0: never) */
    int measure;                                       /* one is due: no batch starts */
    double measure_from_ms;                            /* > 0: measuring since then, nothing in flight */
    struct latency_fine measure_base[LATENCY_ROUTES];
    /* the app's latencies while no batch was in flight (the pauses between
     * them), summed since the budget last had nothing to judge by them */
    struct latency_fine quiet[LATENCY_ROUTES];
    struct latency_fine quiet_from[LATENCY_ROUTES];    /* the reading when the quiet moment began */
    int quiet_open;                                    /* no batch in flight since quiet_from */
    double quiet_at_ms;                                /* > 0: the quiet moment begins then (a grace after
                                                          the last batch, for the queries it held to end) */
    struct relay *relay;                               /* whose latencies it reads */
    const struct throttle_settings *thr;               /* the runner's live settings */
    const char *name;                                  /* the migration, for the log */
};

/* What the budget keeps, for /metrics (bf_runner_budget). */
struct bf_budget_report {
    const char *kind;                      /* off, ratio, absolute */
    int engaged, starved;
    double baseline_ms[LATENCY_ROUTES];    /* 0: not measured */
    double limit_ms[LATENCY_ROUTES];       /* 0: none */
    double p99_ms[LATENCY_ROUTES];
};
/* What the runner knows that the budget decides on. */
struct bf_budget_facts {
    long batch_rows, min_rows, max_rows;   /* the table being filled: its next batch, min_rows, backfill_uncapped_rows */
    long long rows_done;                   /* so far, all tables */
    int busy;                              /* a batch is in flight */
};

void bf_budget_init(struct bf_budget_probe *p, struct relay *relay, const struct throttle_settings *thr);
/* A run of migration `name` starts: a baseline before its first batch,
 * the decisions afresh. */
void bf_budget_restart(struct bf_budget_probe *p, const char *name);
/* The budget's turn in the runner's tick: a baseline to measure (returns
 * how long no batch may start), else a decision on the last window (0).
 * While it holds the backfill back it says why in `reason` and, over its
 * budget, sets *kind to BF_BUDGET_KIND. */
#define BF_BUDGET_KIND "app_latency"
double bf_budget_step(struct bf_budget_probe *p, double now, const struct bf_budget_facts *t, char *reason,
                      size_t reason_cap, const char **kind);
/* A batch started or ended; busy: one is in flight now. */
void bf_budget_batches_changed(struct bf_budget_probe *p, int busy);
/* How soon the budget wants the runner to tick again (ms), or -1. */
double bf_budget_wake_in(const struct bf_budget_probe *p, double now);
/* The throttle object's "budget" in GET /migrations/current. */
json_t *bf_budget_json(const struct bf_budget_probe *p);
void bf_budget_report(const struct bf_budget_probe *p, int running, struct bf_budget_report *out);

#endif

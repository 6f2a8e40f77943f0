/* The backfill's latency budget: how hard the backfill may push while the
 * application's p99 latency, per route (old release, new release), is
 * kept within a budget, either a ratio of the p99 measured without the
 * backfill (app_p99_budget, 1.5 by default) or an absolute limit
 * (max_app_p99_ms, which wins when set). From the last window's p99 it
 * decides the largest batch, the pause after each batch and how many
 * workers may run: over the budget, one worker, batches halved and
 * pauses doubled at every decision; well under it, the reverse, one step
 * at a time (the batches faster far under a floor that binds, and the
 * workers a worker short of a count that was over, for a while). A backfill that stays over at its smallest batches and
 * longest pause is starved, and the rate it still gets is said.
 *
 * Two things keep it from holding back a backfill that does no harm. A
 * floor (app_p99_floor_ms): a p99 under it is never over the budget, so a
 * millisecond-fast app is not guarded for sub-millisecond changes nobody
 * sees. And the app's latency while no batch is in flight: over the
 * budget, the batches' pauses leave quiet moments; when the app's p99 in
 * them is over the budget too, the app is slow by itself (a CPU hog, its
 * own slow queries), not because of the backfill: its baseline is taken
 * from those quiet moments at once, instead of the backfill waiting for
 * the next baseline measurement a minute later. No I/O: the proxy's
 * backfill_runner measures and applies. */
#ifndef PGTANDEM_BACKFILL_BUDGET_H
#define PGTANDEM_BACKFILL_BUDGET_H

#include <stdint.h>

#define BUDGET_ROUTES 2            /* enum latency_route: old, new */
#define BUDGET_EVAL_MS 250.0       /* one decision at most this often */
#define BUDGET_MIN_SAMPLES 20      /* a route with fewer in its window says nothing */
/* A limit at least this far above the baseline: a p99 of 0.4 ms moves by
 * more than half of itself from one second to the next on a quiet server. */
#define BUDGET_SLACK_MS 1.0
#define BUDGET_ROOM 0.8            /* under this fraction of the limit: room for more */
/* Under this fraction of a limit that is the floor: the batch cap climbs
 * by the room left, up to BUDGET_CLIMB_MAX times a decision. */
#define BUDGET_WIDE_ROOM 0.5
#define BUDGET_CLIMB_MAX 4.0
/* Over at N workers: the climb stops at N - 1 this long. */
#define BUDGET_CROWD_HOLD_MS 10000.0
#define BUDGET_PAUSE_MIN_MS 20.0
#define BUDGET_PAUSE_MAX_MS 1000.0
#define BUDGET_STARVED_MS 5000.0   /* over at the floor this long: starved */
/* Engaged and too few queries to judge: held this long before it steps
 * back (a slow app ends few statements per window; that is no release). */
#define BUDGET_IDLE_HOLD_MS 2000.0

enum budget_kind { BUDGET_OFF, BUDGET_RATIO, BUDGET_ABSOLUTE };
enum budget_state {
    BUDGET_IDLE,  /* no limit known, or no route with traffic: nothing to keep */
    BUDGET_UNDER, /* under BUDGET_ROOM of the limit */
    BUDGET_NEAR,  /* between: hold */
    BUDGET_OVER
};
enum budget_event {
    BUDGET_NOTHING, BUDGET_ENGAGED, BUDGET_RELEASED, BUDGET_STARVED, BUDGET_UNSTARVED,
    BUDGET_APP_SLOW, /* slow without the backfill too: the caller takes app_slow_ms as the baseline */
};

struct budget_input {
    double ratio;                        /* app_p99_budget (0: off) */
    double absolute_ms;                  /* max_app_p99_ms (0: off); wins over ratio */
    double floor_ms;                     /* app_p99_floor_ms: a ratio's limit is never under it */
    double baseline_ms[BUDGET_ROUTES];   /* p99 without the backfill (0: not measured) */
    double p99_ms[BUDGET_ROUTES];        /* the last window's */
    uint64_t samples[BUDGET_ROUTES];     /* in that window */
    double quiet_p99_ms[BUDGET_ROUTES];  /* while no batch was in flight, since the caller last reset it */
    uint64_t quiet_samples[BUDGET_ROUTES];
    long batch_rows;                     /* the size the batch sizing would run next */
    long min_rows;
    long max_rows;                       /* a cap that climbs to it is dropped: the table's max_rows, or
                                            what the batch sizing would run uncapped, when known */
    int wanted_workers;                  /* backfill_workers */
    long long rows_done;                 /* so far, for the rate while starved */
};

struct budget {                          /* zeroed: fresh */
    double last_ms;                      /* the last decision (0: none yet) */
    enum budget_kind kind;
    enum budget_state state;
    double limit_ms[BUDGET_ROUTES];      /* 0: no limit on that route */
    double pressure;                     /* the highest p99 / limit of a route with traffic */
    int route;                           /* that route */
    long batch_cap;                      /* the largest batch (0: none) */
    double pause_ms;                     /* after each batch */
    int workers;                         /* at most */
    int crowd_workers;                   /* the workers it was last over at, when more than one (0: none) */
    double crowd_ms;                     /* then */
    int engaged, engagements;
    double idle_since_ms;                /* engaged and idle since (0: not) */
    double floor_since_ms;               /* over at the smallest batch and longest pause since (0: not) */
    long long floor_rows;                /* rows done then */
    int starved;
    double starved_rate;                 /* rows/s while starved */
    char reason[192];                    /* why it holds the backfill back ("" when it does not) */
    double app_slow_ms[BUDGET_ROUTES];   /* BUDGET_APP_SLOW: the p99 without the backfill (0: that route is not) */
};

/* One decision, at most every BUDGET_EVAL_MS (before that it returns
 * BUDGET_NOTHING and changes nothing). Returns what changed that an
 * operator should read in the log. */
enum budget_event budget_decide(struct budget *b, const struct budget_input *in, double now_ms);
/* The backfill starts gently when the app has traffic: one worker,
 * batches of min_rows, climbing while the app stays under its budget, so
 * the first second of the backfill does not cost the app its tail before
 * the first window is judged. It counts as engaged until released. */
void budget_start_gently(struct budget *b, long min_rows);
/* The limit a route's p99 is kept within (0: none): an absolute one, or
 * the baseline times the ratio, at least BUDGET_SLACK_MS above the
 * baseline and at least the floor. */
double budget_limit_ms(double ratio, double absolute_ms, double floor_ms, double baseline_ms);
/* rows, or the cap when it is smaller. */
long budget_batch_rows(const struct budget *b, long rows);
/* off, ratio, absolute; idle, under, near, over. */
const char *budget_kind_word(enum budget_kind k);
const char *budget_state_word(enum budget_state s);

#endif

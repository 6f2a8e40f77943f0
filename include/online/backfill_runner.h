/* The backfill inside the proxy, on its event loop: every table's key
 * ranges (backfill_ranges.h), up to backfill_workers batches at once. The
 * first worker runs on the engine connection the migration holds (with
 * the engine lock); the others open connections of their own. The
 * application's p99 latency, replica lag, lock waits and the operator's
 * settings throttle it, and while any of them holds, one worker runs
 * (backfill_pool.h). A restart continues every range from its checkpoint.
 *
 * It knows nothing of the migration's phases: runner_backfill.c starts it
 * once it holds the engine lock, and learns through the hooks how it
 * ended. */
#ifndef PGTANDEM_BACKFILL_RUNNER_H
#define PGTANDEM_BACKFILL_RUNNER_H

#include <stddef.h>

#include "backfill.h"
#include "backfill_budget.h"
#include "backfill_runner_budget.h"
#include "backfill_pool.h"
#include "metrics.h"
#include "migration_plan.h"
#include "pgasync.h"
#include "progress_line.h"
#include "settings.h"

struct event;
struct event_base;
struct relay;
struct json_t;

enum bf_end {
    BF_END_DONE,    /* every range of every table is done */
    BF_END_STOPPED, /* stopping() held, and no batch is in flight any more */
    BF_END_LOST,    /* the engine connection went away (or the database ran out of something): load again */
    BF_END_FAILED,  /* msg says what */
    BF_END_DATA     /* a batch failed on the data: range names the batch to run again off the loop */
};

struct bf_runner_hooks {
    void *ctx;
    /* How it ended; it runs nothing more until bf_runner_start. range:
     * BF_END_DATA's (valid until then), else NULL. */
    void (*ended)(void *ctx, enum bf_end how, const char *msg, const char *sqlstate, const struct backfill *range);
    /* True: start no batch; once none is in flight, it ends (stopped). */
    int (*stopping)(void *ctx);
    /* The engine connection is free between batches: the caller may send a
     * statement of its own on it; it returns 1 then, and calls
     * bf_runner_kick once that is answered. */
    int (*idle)(void *ctx);
    /* The batches run (again): the database answers. */
    void (*running)(void *ctx);
};

struct bf_runner;

struct bf_lane {
    struct bf_runner *owner;
    int index;
    struct pgasync own;        /* lanes past the first: their connection */
    struct pgasync *conn;      /* the connection it runs on (lane 0: the engine's) */
    int ready;                 /* its backfill session is set up */
    int busy;                  /* a batch (or, lane 0, a question of the runner's) is in flight */
    int lent;                  /* lane 0: the idle hook sent a statement of its own */
    size_t range;              /* the range it runs or ran last (nbf: none) */
    double t0_ms, wake_ms;
    double retry_ms;           /* a lane that could not connect tries again from then */
    int warned;                /* its failure to connect was logged */
};

struct bf_progress {
    long long done, batches;
    double total, estimated, rate, eta_s, percent, max_ms;
    int all_done;
};

struct bf_runner {
    struct event_base *base;
    struct relay *relay;
    const char *engine_db;             /* borrowed */
    struct bf_runner_hooks hooks;
    struct histogram *batch_seconds;   /* borrowed: the migration's metrics */
    struct progress_line progress;     /* the backfill's line in the log every few seconds */
    struct event *timer;
    int running;                       /* between the session's setup and the end */
    int loading;                       /* the checkpoints are being read */
    const char *name;                  /* borrowed, like plan */
    const struct mig_plan *plan;
    const struct mig_backfill_settings *file_cfg;
    const struct throttle_settings *thr; /* the owner's live settings, from init on */
    struct backfill *bf;               /* every range of every table, in plan order */
    size_t nbf;
    struct backfill *next;             /* the ranges being loaded, and the table they are at */
    size_t nnext, table;
    struct bf_lane lanes[BACKFILL_MAX_WORKERS];
    struct backfill_gate gate;
    double lock_wait_ms;               /* when a batch last hit lock_timeout */
    double replica_lag_ms, lag_checked_ms;
    double pause_checked_ms;    /* the checkpoint rows' switch, last read while it held the batches */
    char throttle_reason[200];
    const char *throttle_kind;         /* throttle_reason in one word (metrics), NULL when none */
    /* a batch failed: no new ones; how it ends once the others are answered */
    int ending;
    enum bf_end end_how;
    size_t end_range;
    char end_msg[1024];
    char end_state[6];
    double started_ms, finished_ms;
    long long rows_at_start;
    struct bf_budget_probe budget;
};

/* relay: for its p99 latency. thr: the owner's live settings, borrowed for
 * the runner's life (they may change: bf_runner_settings_changed); status
 * shows them whether batches run here or not. Returns -1 when out of
 * memory. */
int bf_runner_init(struct bf_runner *b, struct event_base *base, struct relay *relay, const char *engine_db,
                   const struct bf_runner_hooks *hooks, struct histogram *batch_seconds,
                   const struct throttle_settings *thr);
/* Loads the checkpoints of plan's tables on db (planning the ranges of a
 * table that has none) and runs the batches. db is the engine connection,
 * open and holding the engine lock; it is borrowed until the end. name,
 * plan and cfg are borrowed likewise. */
void bf_runner_start(struct bf_runner *b, struct pgasync *db, const char *name, const struct mig_plan *plan,
                     const struct mig_backfill_settings *cfg);
/* The statement the idle hook sent is answered. */
void bf_runner_kick(struct bf_runner *b);
void bf_runner_settings_changed(struct bf_runner *b);
/* Stops at once, without ending: the other lanes' connections close (their
 * batches roll back with them), timers stop. The engine connection is the
 * caller's again; a batch in flight on it is forgotten. */
void bf_runner_halt(struct bf_runner *b);
/* Halts and forgets the ranges (a new migration). */
void bf_runner_reset(struct bf_runner *b);
void bf_runner_free(struct bf_runner *b);

/* Loading or running. */
int bf_runner_active(const struct bf_runner *b);
/* A batch is in flight on some lane. */
int bf_runner_busy(const struct bf_runner *b);

/* The progress as GET /migrations/current and /metrics show it. past: the
 * migration is past its backfill; recorded: the rows the state table says
 * are done (what a proxy that only followed knows). */
void bf_runner_progress(const struct bf_runner *b, int past, long long recorded, struct bf_progress *p);
/* GET /migrations/current's "backfill" object. */
struct json_t *bf_runner_json(const struct bf_runner *b, int past, long long recorded);
/* The throttle in one word for metrics' labels: none, paused, app_latency,
 * replica_lag, lock_wait, max_rows, sleep_ratio. */
const char *bf_runner_throttle_word(const struct bf_runner *b);
/* The latency budget the backfill keeps, for /metrics. */
void bf_runner_budget(const struct bf_runner *b, struct bf_budget_report *out);

#endif

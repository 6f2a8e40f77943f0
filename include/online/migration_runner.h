/* The engine inside the proxy: runs a migration submitted through the admin
 * API. Expand and the bookkeeping around it run on the engine worker
 * (engine_worker.h: the CLI's engine functions, on a thread with its own
 * connection, off the event loop); the backfill batches run on a
 * non-blocking libpq connection driven by the proxy's loop; the contract
 * runs as a cutover (cutover.h) while the relay holds client traffic. It
 * reaches the relay only through relay_control.h.
 *
 * Callers reach it through one entry point, runner_request. Every request
 * is answered exactly once, on every path: requests that wait (complete,
 * rollback) are answered when the phase they wait for ends, from the one
 * function that changes the phase (migration_runner.c; its parts below it
 * are listed in runner_internal.h). */
#ifndef PGTANDEM_MIGRATION_RUNNER_H
#define PGTANDEM_MIGRATION_RUNNER_H

#include <stddef.h>

#include "backfill_runner.h"
#include "cutover.h"
#include "metrics.h"
#include "runner_request.h"

struct relay;
struct fleet;
struct event_base;
struct json_t;
struct migration_runner;

/* engine_db NULL: no engine; every request is answered 503. fleet (may be
 * NULL) tells the runner of migrations changed by anyone else, and holds
 * the other proxies during the cutover. */
struct migration_runner *runner_new(struct event_base *base, struct relay *relay, const char *engine_db,
                                    struct fleet *fleet);
void runner_request(struct migration_runner *r, const struct runner_request *req);
/* The requester identified by ctx went away: it will not be answered. */
void runner_forget(struct migration_runner *r, void *ctx);
void runner_free(struct migration_runner *r);
/* The engine connection for GET /status "engine": connected, what is in
 * flight and for how long, the last failure, and who blocks the step in
 * progress (blocked_by). */
struct json_t *runner_connection_json(const struct migration_runner *r);

/* The runner's numbers for GET /metrics (migration_metrics.c renders
 * them); pointers stay valid until the runner runs again. */
struct runner_metrics {
    const char *name;                   /* NULL: no migration known */
    const char *phase;                  /* one of phases[] */
    const char *const *phases;
    int nphases;
    long long rows_done;
    double rows_total, rows_per_s;
    double progress;                    /* 0 to 1; 1 once the backfill is done */
    double eta_s;                       /* < 0: not known yet */
    int paused;                         /* the backfill is paused (operator) */
    const char *throttle;               /* none, app_latency, replica_lag, lock_wait, max_rows, sleep_ratio */
    int following;                      /* another proxy of the fleet does the work */
    const struct histogram *batch_seconds; /* batches this process ran */
    const struct cutover_totals *cutover;
    struct bf_budget_report budget;     /* the latency budget the backfill keeps */
    /* Every migration this proxy routes, as GET /migrations/current's
     * in_flight ({name, path, sessions, status, engine}); the caller
     * frees it (json_decref). */
    struct json_t *in_flight;
};
void runner_metrics(const struct migration_runner *r, struct runner_metrics *out);

#endif

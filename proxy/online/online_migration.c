/* The engine inside the proxy (see online_migration.h).
 *
 * Phases (migration_lifecycle.h, which says which may follow which and
 * what each request may do in each): expanding (the worker thread) ->
 * backfilling (batches on the loop) -> finishing (worker: validations,
 * status active) -> active -> completing (the cutover, on the loop) ->
 * completed. Rollback runs on the worker from any phase before completed;
 * failed is left by rollback or by a new start.
 *
 * The state of record stays in schema pgtandem of the database, so a proxy
 * restart picks up a running backfill where its checkpoint left it, and
 * learns what happened to a migration while it was away. Every proxy of a
 * fleet follows it (fleet.h): a migration started or changed elsewhere is
 * loaded from the table whenever this proxy is not working on it itself;
 * the expand and the backfill are done by whoever holds the engine lock,
 * and a follower takes them over when that one stops. */
#include "online_migration.h"

#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "backfill.h"
#include "backfill_runner.h"
#include "clock.h"
#include "engine.h"
#include "engine_worker.h"
#include "fleet.h"
#include "log.h"
#include "migration.h"
#include "migration_lifecycle.h"
#include "migration_plan.h"
#include "migration_state.h"
#include "pgasync.h"
#include "progress_line.h"
#include "relay_control.h"
#include "retry.h"
#include "settings.h"
#include "sql_load.h"

/* The lifecycle's phases by the runner's short names. switched: a
 * complete with a revert window ran; every session sees the new shape, the
 * old one is kept in tandem (dual-written) until finalize drops it or
 * revert goes back to it. */
#define RP_IDLE MIG_PH_IDLE
#define RP_EXPANDING MIG_PH_EXPANDING
#define RP_BACKFILLING MIG_PH_BACKFILLING
#define RP_FINISHING MIG_PH_FINISHING
#define RP_ACTIVE MIG_PH_ACTIVE
#define RP_COMPLETING MIG_PH_COMPLETING
#define RP_COMPLETED MIG_PH_COMPLETED
#define RP_ROLLING_BACK MIG_PH_ROLLING_BACK
#define RP_ROLLED_BACK MIG_PH_ROLLED_BACK
#define RP_FAILED MIG_PH_FAILED
#define RP_SWITCHED MIG_PH_SWITCHED

#define RECONNECT_MAX_DELAY_MS 5000
/* A backfill batch aims at tens of milliseconds and the cutover's
 * statements carry a statement_timeout of a few seconds: a statement on
 * the engine connection unanswered for this long is a dead connection. */
#define ENGINE_WATCHDOG_MS 30000
#define HEALTH_CHECK_MS 3000
#define ROUTE_ATTEMPTS 5 /* drains tried before a start gives up */
#define LOCK_TRIES 50 /* an engine killed a moment ago (kill -9): its backend lets go when it notices */

struct migration_runner;
typedef void (*runner_step_fn)(struct migration_runner *r);

struct waiter {
    runner_answer_fn fn;
    void *ctx;
};

struct migration_runner {
    struct event_base *base;
    struct relay *relay;
    struct fleet *fleet;            /* NULL: no fleet */
    int following;                  /* the migration is another engine's work */
    double follow_since_ms;         /* when this follower first saw the backfill running elsewhere */
    int takeover_at_once;           /* a backfill found at start may be taken over without waiting */
    char *engine_db;
    enum mig_phase phase;
    char *name;
    char version_schema[96];        /* the new shape's views */
    char old_schema[96];            /* the old shape's views, for every other session */
    int route_attempts;             /* drains tried before the expand (start) */
    int route_holding;              /* the relay holds for that drain */
    enum mig_cut cut_kind;          /* of the cutover in progress or last run */
    enum mig_phase cut_from;        /* the phase it returns to when it does not commit */
    struct migration mig;
    int have_mig;
    struct mig_plan plan;
    int have_plan;
    struct bf_runner bfr;           /* the backfill's batches (backfill_runner.h) */
    size_t cur;                     /* the post-contract step running */
    char error[1024];
    struct engine_worker worker;    /* the engine's blocking steps, off the loop */
    int step_status;                /* ENGINE_OK/FAILED/INVALID of the last worker step */
    struct pgasync db;
    int holds_lock;                 /* db holds the one-engine advisory lock */
    struct event *timer;
    runner_step_fn timer_step;
    struct event *window_timer;     /* a revert window's end (switched): finalize */
    long long recorded_rows;        /* rows done by whoever ran the backfill (the state table) */
    struct throttle_settings thr;   /* live backfill settings (settings.h) */
    int throttle_dirty;             /* to be saved with the migration's state */
    struct histogram batch_seconds; /* batches run by this process for this migration */
    int stop_backfill;              /* a rollback waits for the batch in flight */
    struct cutover cut;
    struct cutover_options cut_opt;
    int have_cut_rep;               /* cut.rep describes a cutover of this migration */
    struct waiter complete_w, rollback_w;
    int rollback_asked;             /* a rollback was asked for and has not started yet (its request may
                                     * have been answered: 202, its step blocked by another session) */
    struct waiter start_w;          /* a start waiting for the connection-slot check */
    struct runner_request start_q;  /* its request, body owned */
    const char *expand_body;        /* the migration to expand once the sessions are routed */
    size_t expand_body_len;
    unsigned int route_seed;
    runner_step_fn after_connect, after_unlock;
    int lock_tries, reconnects;
    int db_unavailable;             /* the complete waiting ended because the database could not be reached */
    char table_status[24];          /* what pgtandem.migrations said when this proxy last agreed with it */
    struct event *blocked_timer;    /* while a worker step runs: who blocks it */
    json_t *blocked_by;             /* the backends its statement waits for, as last seen */
    double blocked_seen_ms, blocked_logged_ms;
    int polling_blockers;           /* db is busy with that question */
    struct event *health_timer;     /* reconnects a connection lost while nothing used it */
    /* A connection slot held for the worker step that comes next
     * (validations, a rollback, a diagnosis) while a migration is in
     * progress: it is given up just before the worker connects, and taken
     * again once the step has ended, so clients that fill the database
     * mid-way cannot leave a step without a slot. */
    struct pgasync reserve;
    int reserve_logged;             /* its failure was logged for this outage */
};

/* The migration file's backfill section sets the starting values. */
static void settings_throttle_from_migration(struct throttle_settings *t, const struct mig_backfill_settings *bf)
{
    t->max_rows_per_sec = bf->max_rows_per_sec;
    t->target_ms = bf->target_ms;
    t->sleep_ratio = bf->sleep_ratio;
    t->workers = bf->workers;
}

static void answer_start_check(struct migration_runner *r, int status, const char *why);
static void backfill_stopped(struct migration_runner *r);
static void after_checks(void *ctx, int code, const char *why);
static void diagnose_batch(struct migration_runner *r, const struct backfill *b, const char *error);
static json_t *backfill_json(const struct migration_runner *r);
static void start_rollback(struct migration_runner *r);
static void load_state(struct migration_runner *r);
static void watch_blockers(struct migration_runner *r);

static void give_slot_to_step(struct migration_runner *r);

static json_t *error_json(const char *msg)
{
    return json_pack("{s:s}", "error", msg);
}

/* ---- the one place the phase changes, and pending requests are answered ---- */

/* The cutover in progress (who blocks it, attempts so far), else the last. */
static json_t *cutover_json(const struct migration_runner *r)
{
    return cutover_running(&r->cut) || r->have_cut_rep ? cutover_report_json(&r->cut.rep) : json_null();
}

static void answer(struct waiter *w, int status, json_t *body)
{
    runner_answer_fn fn = w->fn;
    void *ctx = w->ctx;
    w->fn = NULL;
    w->ctx = NULL;
    if (fn)
        fn(ctx, status, body);
    else
        json_decref(body);
}

static void route_then_expand(struct migration_runner *r);

/* What the lifecycle's admission rules need to know besides the phase. */
static void runner_facts(const struct migration_runner *r, struct mig_facts *f)
{
    memset(f, 0, sizeof *f);
    f->name = r->name;
    /* the phase's own step: on the worker, or the drain before expand */
    f->step_running = engine_worker_running(&r->worker) || r->route_holding || r->timer_step == route_then_expand;
    f->following = r->following;
    f->rollback_asked = r->rollback_asked || r->rollback_w.fn != NULL;
    f->start_checking = r->start_w.fn != NULL;
}

/* 1 when request q may go ahead now; else it is answered with the
 * lifecycle's refusal (its error, the migration and the phase). */
static int admitted(struct migration_runner *r, enum mig_request q, const struct waiter *w)
{
    struct mig_facts f;
    char why[600];
    runner_facts(r, &f);
    int status = mig_admit(r->phase, q, &f, why, sizeof why);
    if (status == 0)
        return 1;
    struct waiter once = *w;
    answer(&once, status, json_pack("{s:s,s:s?,s:s}", "error", why, "name", r->phase != RP_IDLE ? r->name : NULL,
                                    "phase", mig_phase_word(r->phase)));
    return 0;
}

static void answer_complete(struct migration_runner *r, int status)
{
    json_t *body = cutover_json(r);
    if (!json_is_object(body))
        body = json_object();
    json_object_set_new(body, "status", json_string(mig_phase_word(r->phase)));
    json_object_set_new(body, "name", json_string(r->name ? r->name : ""));
    if (status != 200 && r->error[0])
        json_object_set_new(body, "error", json_string(r->error));
    if (r->phase == RP_SWITCHED && status == 200)
        json_object_set_new(body, "revert_window_s", json_integer(r->cut_opt.revert_window_s));
    answer(&r->complete_w, status, body);
}

static void answer_rollback(struct migration_runner *r, int status)
{
    if (status == 200)
        answer(&r->rollback_w, 200, json_pack("{s:s,s:s}", "status", mig_phase_word(r->phase), "name", r->name));
    else
        answer(&r->rollback_w, status, json_pack("{s:s,s:s}", "status", mig_phase_word(r->phase), "error",
                                                 r->error[0] ? r->error : "the rollback did not run"));
}

/* Each release sees its own shape from start to complete, as
 * migration_lifecycle.c routes it per phase. A schema routed before it
 * exists is harmless: Postgres skips it on the search_path, and uses it
 * from the statement after it appears, with the same columns the table
 * had. */
static void route_for(struct migration_runner *r, enum mig_phase p)
{
    enum mig_shape new_release, old_release;
    mig_routes(p, r->cut_from, &new_release, &old_release);
    const char *schema[] = {[MIG_SHAPE_NONE] = NULL, [MIG_SHAPE_OLD] = r->old_schema,
                            [MIG_SHAPE_NEW] = r->version_schema};
    int routed = old_release != MIG_SHAPE_NONE && r->name;
    /* the relay gives sessions of the new release the old release's schema
     * when it has none of their own */
    relay_route_version(r->relay, routed ? r->name : NULL,
                        routed && new_release != old_release ? schema[new_release] : NULL,
                        routed ? schema[old_release] : NULL);
}

static void push_route(struct migration_runner *r)
{
    route_for(r, r->phase);
}

/* What the database's status is while the runner is in phase p ("": none). */
static const char *phase_status(const struct migration_runner *r, enum mig_phase p)
{
    int st = mig_phase_status(p, r->cut_from);
    return st >= 0 ? mig_status_word((enum mig_status)st) : "";
}

/* A move the lifecycle's table does not allow, or a request left waiting
 * where it cannot be, is a bug in this file: said loudly, and fatal in
 * debug builds. */
static void lifecycle_bug(struct migration_runner *r, const char *what)
{
    log_error("migration %s: BUG: %s (phase %s); please report it", r->name ? r->name : "-", what,
              mig_phase_word(r->phase));
#ifdef PGT_DEBUG
    abort();
#endif
}

/* Answers the requests that wait, as the lifecycle says for this move. */
static void answer_waiters(struct migration_runner *r, enum mig_phase from, enum mig_phase to)
{
    int present[MIG_NWAITERS] = {[MIG_WAIT_COMPLETE] = r->complete_w.fn != NULL,
                                 [MIG_WAIT_ROLLBACK] = r->rollback_w.fn != NULL};
    struct mig_wait_facts f = {.cut = r->cut_kind, .error = r->error[0] != '\0', .db_unavailable = r->db_unavailable,
                               .stopping_backfill = r->stop_backfill, .refused = r->step_status == ENGINE_INVALID};
    struct mig_answers a;
    mig_waiters_on_move(from, to, present, &f, &a);
    if (a.complete_becomes_rollback) {
        r->rollback_w = r->complete_w;
        r->complete_w.fn = NULL;
        r->complete_w.ctx = NULL;
    }
    if (a.status[MIG_WAIT_COMPLETE])
        answer_complete(r, a.status[MIG_WAIT_COMPLETE]);
    if (a.status[MIG_WAIT_ROLLBACK])
        answer_rollback(r, a.status[MIG_WAIT_ROLLBACK]);
}

/* The one place the phase changes. A failure of this proxy's own work is
 * not written to the table, which keeps saying what it said: table_status
 * stays what it was, so the fleet's poll does not take that status for
 * news. Where the table is the truth again (a rollback or a read of the
 * state that failed), table_status is forgotten and the next poll
 * reloads. cause: the runner's own work, or the status of record read
 * back. */
static void move_to(struct migration_runner *r, enum mig_phase phase, enum mig_cause cause)
{
    enum mig_phase from = r->phase;
    char what[160];
    if (!mig_move_allowed(from, phase, cause)) {
        snprintf(what, sizeof what, "forbidden phase move %s -> %s (%s)", mig_phase_word(from),
                 mig_phase_word(phase), cause == MIG_BY_RECORD ? "read from the table" : "by its own work");
        lifecycle_bug(r, what);
    }
    if ((r->complete_w.fn && !mig_waiter_may_wait(MIG_WAIT_COMPLETE, from)) ||
        (r->rollback_w.fn && !mig_waiter_may_wait(MIG_WAIT_ROLLBACK, from)))
        lifecycle_bug(r, "a request waits in a phase it cannot wait in");
    if (phase != RP_SWITCHED)
        evtimer_del(r->window_timer); /* the window ended: reverted, finalized, here or elsewhere */
    r->phase = phase;
    watch_blockers(r);
    if (phase != RP_COMPLETING)
        r->db.watchdog_ms = ENGINE_WATCHDOG_MS;
    if (phase != RP_FAILED && phase_status(r, phase)[0])
        snprintf(r->table_status, sizeof r->table_status, "%s", phase_status(r, phase));
    push_route(r);
    answer_waiters(r, from, phase);
    if (r->rollback_asked && !mig_waiter_may_wait(MIG_WAIT_ROLLBACK, phase)) {
        log_warn("migration %s: the rollback asked for did not run (the migration is %s)", r->name ? r->name : "-",
                 mig_phase_word(phase));
        r->rollback_asked = 0;
    }
}

static void enter_phase(struct migration_runner *r, enum mig_phase phase)
{
    move_to(r, phase, MIG_BY_WORK);
}

static void release_lock_then(struct migration_runner *r, runner_step_fn next);

/* A failure leaves no lock behind: the next start, a resume from the CLI or
 * another proxy must be able to take it. A rollback that was asked for
 * still runs. */
static void fail(struct migration_runner *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct migration_runner *r, const char *fmt, ...)
{
    char msg[sizeof r->error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(r->error, sizeof r->error, "%s", msg);
    log_error("migration %s: %s", r->name ? r->name : "?", r->error);
    bf_runner_halt(&r->bfr);
    if (r->holds_lock || !pgasync_ready(&r->db)) {
        pgasync_close(&r->db); /* ends the session and its advisory lock */
        r->holds_lock = 0;
    }
    if (r->rollback_asked || r->rollback_w.fn || r->stop_backfill) {
        r->stop_backfill = 0;
        start_rollback(r);
        return;
    }
    enter_phase(r, RP_FAILED);
}

/* ---- timers ---- */

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct migration_runner *r = arg;
    runner_step_fn step = r->timer_step;
    r->timer_step = NULL;
    if (step)
        step(r);
}

static void schedule(struct migration_runner *r, long delay_ms, runner_step_fn step)
{
    struct timeval tv = {delay_ms / 1000, (delay_ms % 1000) * 1000};
    r->timer_step = step;
    if (evtimer_add(r->timer, &tv) != 0) {
        r->timer_step = NULL;
        fail(r, "cannot arm the engine's timer (libevent)");
    }
}

static void cancel_timer(struct migration_runner *r)
{
    evtimer_del(r->timer);
    r->timer_step = NULL;
}

/* ---- the engine connection ---- */

static void outage_reason(struct migration_runner *r, char *out, size_t n, const char *why, const char *sqlstate);

static void on_session_set(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    (void)sqlstate;
    struct migration_runner *r = ctx;
    runner_step_fn next = r->after_connect;
    r->after_connect = NULL;
    if (error)
        log_warn("engine connection settings: %s", error); /* Postgres < 14: no connection check */
    if (r->reconnects > 0)
        log_info("migration %s: the database is back after %d retries", r->name ? r->name : "-", r->reconnects);
    r->reconnects = 0;
    next(r);
}

static void on_connected(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    (void)sqlstate;
    struct migration_runner *r = ctx;
    if (error || pgasync_send(&r->db, MIG_STATE_SESSION_SQL, 0, NULL, on_session_set, r) != 0) {
        char why[sizeof r->db.error];
        snprintf(why, sizeof why, "%s", error ? error : r->db.error);
        pgasync_close(&r->db);
        r->after_connect = NULL;
        char reason[sizeof r->error - 32];
        outage_reason(r, reason, sizeof reason, why, "08006");
        snprintf(r->error, sizeof r->error, "cannot connect to the database: %s", reason);
        if (r->reconnects == 0) /* once per outage, not per retry */
            log_warn("migration %s: %s", r->name ? r->name : "-", r->error);
        if (r->start_w.fn)
            answer_start_check(r, 503, r->error);
        /* the phase stays; what waits on it learns why */
        if (r->phase == RP_COMPLETING) {
            r->db_unavailable = 1;
            enter_phase(r, r->cut_from);
        }
        else if (r->phase == RP_BACKFILLING && r->stop_backfill)
            backfill_stopped(r);
        else if (r->phase == RP_BACKFILLING)
            schedule(r, r->reconnects < 5 ? 1000L << r->reconnects++ : RECONNECT_MAX_DELAY_MS, load_state);
        else
            r->reconnects++; /* the health check tries again; the outage was logged once */
    }
}

/* Runs next once the engine connection is open. On failure the phase
 * stays, r->error says why, and a waiting request is answered. */
static void with_connection(struct migration_runner *r, runner_step_fn next)
{
    if (pgasync_ready(&r->db)) {
        next(r);
        return;
    }
    pgasync_close(&r->db);
    r->holds_lock = 0;
    r->after_connect = next;
    if (pgasync_connect(&r->db, r->engine_db, on_connected, r) != 0)
        on_connected(r, NULL, r->db.error, NULL);
}

static void on_unlocked(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    (void)error;
    (void)sqlstate;
    struct migration_runner *r = ctx;
    runner_step_fn next = r->after_unlock;
    r->after_unlock = NULL;
    r->holds_lock = 0;
    next(r);
}

/* The worker's engine takes the one-engine advisory lock itself: let go first. */
static void release_lock_then(struct migration_runner *r, runner_step_fn next)
{
    if (!pgasync_ready(&r->db) || !r->holds_lock) {
        next(r);
        return;
    }
    r->after_unlock = next;
    if (pgasync_send(&r->db, MIG_STATE_UNLOCK_SQL, 0, NULL, on_unlocked, r) != 0) {
        r->after_unlock = NULL;
        pgasync_close(&r->db);
        r->holds_lock = 0;
        next(r);
    }
}

/* A lost connection (a restart, a suspended compute) or a server out of
 * disk during the backfill is waited out, not fatal: the checkpoint commits
 * with each batch, so it continues where it stopped. */
static int connection_lost(const char *sqlstate)
{
    return pg_error_transient(sqlstate);
}

/* "the database's disk is full (53100): could not extend file ...". A
 * disk-full server often crashes and recovers next: its "not yet accepting
 * connections" is a consequence, and the disk stays the reported cause. */
static void outage_reason(struct migration_runner *r, char *out, size_t n, const char *why, const char *sqlstate)
{
    const char *cause = pg_error_cause(sqlstate);
    if (r->reconnects > 0 && strstr(r->error, "(53") && sqlstate && strncmp(sqlstate, "53", 2) != 0) {
        const char *p = strstr(r->error, ": ");
        snprintf(out, n, "%.600s; now: %.300s", p ? p + 2 : r->error, why);
        return;
    }
    if (cause)
        snprintf(out, n, "%s (%s): %.700s", cause, sqlstate, why);
    else
        snprintf(out, n, "%.900s", why);
}

static void reconnect_backfill(struct migration_runner *r, const char *why, const char *sqlstate)
{
    bf_runner_halt(&r->bfr);
    if (r->phase != RP_BACKFILLING || r->stop_backfill) {
        snprintf(r->error, sizeof r->error, "lost the database connection: %.900s", why);
        pgasync_close(&r->db);
        r->holds_lock = 0;
        if (r->stop_backfill) {
            backfill_stopped(r);
        } else if (r->phase == RP_COMPLETING) {
            r->db_unavailable = 1;
            enter_phase(r, r->cut_from);
        }
        return;
    }
    char reason[sizeof r->error - 32];
    outage_reason(r, reason, sizeof reason, why, sqlstate);
    snprintf(r->error, sizeof r->error, "waiting for the database: %s", reason);
    if (r->reconnects == 0) /* once per outage, not per retry */
        log_warn("migration %s: backfill %s; retrying with backoff, continuing from the checkpoint",
                 r->name, r->error);
    pgasync_close(&r->db);
    r->holds_lock = 0;
    schedule(r, r->reconnects < 5 ? 1000L << r->reconnects++ : RECONNECT_MAX_DELAY_MS, load_state);
}

/* ---- backfill on the loop (backfill_runner.c runs the batches) ---- */

/* Between our unlock and the finishing worker's lock, a follower that has
 * seen the backfill run for two leases may take the lock (it tries on every
 * poll): it finds the backfill done and finishes it itself. That is no
 * failure: this proxy follows it (and takes the work back should it die). */
static int lost_lock_to_a_follower(struct migration_runner *r, int code, const char *why)
{
    if (code == 0 || !r->fleet || !strstr(why, ENGINE_LOCK_HELD_MSG))
        return 0;
    log_info("migration %s: another proxy of the fleet took the engine lock to finish the backfill; following it",
             r->name);
    r->following = 1;
    r->follow_since_ms = 0;
    r->takeover_at_once = 0;
    enter_phase(r, RP_BACKFILLING);
    load_state(r);
    return 1;
}

static void after_finish(void *ctx, int code, const char *why)
{
    struct migration_runner *r = ctx;
    r->step_status = code;
    if (code == 0 && r->rollback_asked) { /* it ended before the stop reached it: the rollback still runs */
        start_rollback(r);
        return;
    }
    if (!r->rollback_asked && lost_lock_to_a_follower(r, code, why))
        return;
    if (code != 0) {
        fail(r, "finishing the backfill: %s", why);
        return;
    }
    r->error[0] = '\0';
    enter_phase(r, RP_ACTIVE);
    log_info("migration %s is active: both shapes are live; complete it once the old release is gone", r->name);
}

static void spawn_finish(struct migration_runner *r)
{
    enter_phase(r, RP_FINISHING);
    give_slot_to_step(r);
    if (engine_worker_run(&r->worker, ENGINE_JOB_FINISH, r->engine_db, NULL, 0, after_finish, r) != 0)
        fail(r, "%s", r->worker.why);
}

static void backfill_stopped(struct migration_runner *r)
{
    r->stop_backfill = 0;
    release_lock_then(r, start_rollback);
}

/* Past the backfill, whatever this process counted (a follower, or a
 * proxy restarted after it, counted nothing): the rows are all done. */
static int past_backfill(const struct migration_runner *r)
{
    return mig_phase_past_backfill(r->phase);
}

static void after_diagnosis(void *ctx, int code, const char *why)
{
    struct migration_runner *r = ctx;
    r->step_status = code;
    if (r->stop_backfill) {
        backfill_stopped(r);
        return;
    }
    if (code == 0) { /* it went through this time: carry on from the checkpoint */
        r->error[0] = '\0';
        load_state(r);
        return;
    }
    fail(r, "%s", why);
}

/* A batch failed on the data (an `up` expression that errors on some row).
 * The engine runs the next batch of the same range once more on the worker
 * and, when it fails, names the row and the expression; its queries stay
 * off the loop. The proxy lets go of the engine lock first so the worker
 * can take it. */
static void diagnose_batch(struct migration_runner *r, const struct backfill *b, const char *error)
{
    snprintf(r->error, sizeof r->error, "backfill batch on %.200s failed: %.700s", b->table->qname, error);
    log_warn("migration %s: %s; finding the row", r->name, r->error);
    pgasync_close(&r->db);
    r->holds_lock = 0;
    give_slot_to_step(r);
    if (engine_worker_set_range(&r->worker, b->table->schema, b->table->name, b->range_no) != 0 ||
        engine_worker_run(&r->worker, ENGINE_JOB_DIAGNOSE, r->engine_db, NULL, 0, after_diagnosis, r) != 0)
        fail(r, "%s", r->error);
}

static void backfill_finished(struct migration_runner *r)
{
    struct bf_progress p;
    bf_runner_progress(&r->bfr, 0, 0, &p);
    log_info("migration %s: backfill done, %lld rows in %.1f s", r->name, p.done,
             (r->bfr.finished_ms - r->bfr.started_ms) / 1000.0);
    release_lock_then(r, spawn_finish);
}

static void on_throttle_saved(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    (void)sqlstate;
    struct migration_runner *r = ctx;
    if (error)
        log_warn("migration %s: saving the throttle settings: %s", r->name, error);
    /* lost with the connection: still to be saved, and not to be replaced by
     * the stale settings the reconnect's reload reads */
    if (error && connection_lost(sqlstate))
        r->throttle_dirty = 1;
    bf_runner_kick(&r->bfr);
}

/* Settings changed through the admin API live with the migration's state,
 * so a restarted proxy (or another one) continues with them. */
static int save_throttle(struct migration_runner *r, pgasync_done_fn done)
{
    r->throttle_dirty = 0;
    char *text = settings_throttle_dump(&r->thr);
    const char *values[2] = {r->name, text};
    int rc = text ? pgasync_send(&r->db, MIG_STATE_SAVE_THROTTLE_SQL, 2, values, done, r) : -1;
    free(text);
    if (rc != 0)
        r->throttle_dirty = 1;
    return rc;
}

/* The runner's hooks: how its batches ended, and what the phase says. */
static void backfill_ended(void *ctx, enum bf_end how, const char *msg, const char *sqlstate,
                           const struct backfill *range)
{
    struct migration_runner *r = ctx;
    switch (how) {
    case BF_END_DONE: backfill_finished(r); return;
    case BF_END_STOPPED: backfill_stopped(r); return;
    case BF_END_LOST: reconnect_backfill(r, msg, sqlstate); return;
    case BF_END_DATA: diagnose_batch(r, range, msg); return;
    case BF_END_FAILED: break;
    }
    fail(r, "%s", msg);
}

static int backfill_stopping(void *ctx)
{
    const struct migration_runner *r = ctx;
    return r->stop_backfill;
}

static int backfill_idle(void *ctx)
{
    struct migration_runner *r = ctx;
    return r->throttle_dirty && save_throttle(r, on_throttle_saved) == 0;
}

static void backfill_running(void *ctx)
{
    struct migration_runner *r = ctx;
    r->error[0] = '\0';
}

static void take_engine_lock(struct migration_runner *r);
static void redo_expand(struct migration_runner *r);

static void on_lock(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    struct migration_runner *r = ctx;
    if (error && connection_lost(sqlstate)) {
        reconnect_backfill(r, error, sqlstate);
        return;
    }
    if (error || !res || PQntuples(res) != 1 || PQgetvalue(res, 0, 0)[0] != 't') {
        if (!error && r->following) { /* another engine backfills; we follow it */
            r->lock_tries = 0;
            snprintf(r->error, sizeof r->error, "%s", "");
            return;
        }
        if (!error && ++r->lock_tries < LOCK_TRIES) {
            schedule(r, 100, take_engine_lock);
            return;
        }
        fail(r, ENGINE_LOCK_HELD_MSG " (advisory lock " ENGINE_LOCK_KEY
                " is held): %s", error ? error : "stop it or wait for it to finish");
        return;
    }
    r->lock_tries = 0;
    r->holds_lock = 1;
    int took_over = r->following;
    r->following = 0;
    r->follow_since_ms = 0;
    r->takeover_at_once = 0;
    if (r->phase == RP_EXPANDING) { /* the engine that expanded is gone (kill -9 while it waited on a lock) */
        log_info("migration %s: no engine is expanding it any more; this proxy redoes the expand", r->name);
        release_lock_then(r, redo_expand);
        return;
    }
    if (took_over)
        log_info("migration %s: no engine is backfilling; this proxy continues from the checkpoint", r->name);
    bf_runner_start(&r->bfr, &r->db, r->name, &r->plan, &r->mig.backfill, &r->thr);
}

static void take_engine_lock(struct migration_runner *r)
{
    if (pgasync_send(&r->db, MIG_STATE_TRY_LOCK_SQL, 0, NULL, on_lock, r) != 0)
        reconnect_backfill(r, r->db.error, r->db.sqlstate);
}

/* Settings saved with the state win over the migration file's; settings
 * changed here and not saved yet (the connection was down) win over both.
 * Each load starts again from the file's: a state saved with none (a run
 * started again after a rollback) must not keep what an earlier load of
 * the old run's settings left here (its operator pause). */
static void restore_throttle(struct migration_runner *r, const char *saved)
{
    char err[256];
    if (r->throttle_dirty)
        return;
    settings_throttle_defaults(&r->thr);
    settings_throttle_from_migration(&r->thr, &r->mig.backfill);
    if (saved && saved[0] && settings_throttle_load(&r->thr, saved, err, sizeof err) != 0)
        log_warn("migration %s: ignoring saved throttle settings: %s", r->name, err);
}

static int parse_state(struct migration_runner *r, PGresult *res)
{
    char err[1024];
    const char *json = PQgetvalue(res, 0, 2);
    if (!r->have_mig) {
        if (mig_parse(json, strlen(json), r->name, &r->mig, err, sizeof err) != 0) {
            fail(r, "%s", err);
            return -1;
        }
        r->have_mig = 1;
    }
    restore_throttle(r, PQgetisnull(res, 0, 3) ? NULL : PQgetvalue(res, 0, 3));
    r->recorded_rows = atoll(PQgetvalue(res, 0, 5));
    if (r->have_plan)
        mig_plan_free(&r->plan);
    r->have_plan = !PQgetisnull(res, 0, 0) && mig_plan_from_json(PQgetvalue(res, 0, 0), &r->plan, err, sizeof err) == 0;
    if (!r->have_plan) {
        fail(r, "the stored plan cannot be read: %s", err);
        return -1;
    }
    return 0;
}

/* A follower takes the expand or the backfill over only once it has seen
 * it run elsewhere for two leases: the engine that expanded takes the lock
 * within milliseconds, and must not lose it to a follower. */
static int takeover_due(struct migration_runner *r)
{
    if (r->takeover_at_once)
        return 1;
    double lease = r->fleet ? fleet_lease_ms(r->fleet) : 3000;
    if (r->follow_since_ms == 0)
        r->follow_since_ms = clock_now_ms();
    return clock_now_ms() - r->follow_since_ms >= 2 * lease;
}

/* The state row is the truth: whatever happened while nobody watched
 * (a contract that committed, a rollback from the CLI) is what we report. */
static void on_state_loaded(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    struct migration_runner *r = ctx;
    if (error && connection_lost(sqlstate)) {
        reconnect_backfill(r, error, sqlstate);
        return;
    }
    if (error || !res || PQntuples(res) != 1) {
        r->table_status[0] = '\0'; /* the next poll reads it again */
        fail(r, "reading pgtandem.migrations: %s", error ? error : "migration not recorded");
        return;
    }
    if (parse_state(r, res) != 0) {
        r->table_status[0] = '\0';
        return;
    }
    const char *status = PQgetvalue(res, 0, 1);
    int st = mig_status_of_word(status);
    snprintf(r->table_status, sizeof r->table_status, "%s", status);
    if (st < 0) {
        fail(r, "pgtandem.migrations says %s is \"%.40s\", which is no status this proxy knows", r->name, status);
    } else if (st == MIG_ST_FAILED) {
        snprintf(r->error, sizeof r->error, "%s", PQgetisnull(res, 0, 4) ? status : PQgetvalue(res, 0, 4));
        move_to(r, RP_FAILED, MIG_BY_RECORD);
    } else if (st == MIG_ST_EXPANDING && r->following) {
        /* another engine expands; its next status comes by notification.
         * It holds the engine lock until then: a lock that is free means
         * that engine is gone, and the expand is this proxy's to redo. */
        move_to(r, RP_EXPANDING, MIG_BY_RECORD);
        if (takeover_due(r))
            take_engine_lock(r);
    } else if (st == MIG_ST_EXPANDING) {
        fail(r, "the expand of %s did not finish (its process was interrupted); start it again or roll it back",
             r->name);
    } else if (st == MIG_ST_BACKFILLING) {
        move_to(r, RP_BACKFILLING, MIG_BY_RECORD);
        if (!r->following || takeover_due(r))
            take_engine_lock(r);
    } else {
        move_to(r, mig_phase_of_status((enum mig_status)st), MIG_BY_RECORD);
    }
}

static void send_load_state(struct migration_runner *r)
{
    const char *values[1] = {r->name};
    if (pgasync_send(&r->db, MIG_STATE_LOAD_SQL, 1, values, on_state_loaded, r) != 0)
        reconnect_backfill(r, r->db.error, r->db.sqlstate);
}

static void load_state(struct migration_runner *r)
{
    with_connection(r, send_load_state);
}

/* ---- start ---- */

static void after_expand(void *ctx, int code, const char *why)
{
    struct migration_runner *r = ctx;
    r->step_status = code;
    if (code != 0) {
        fail(r, "%s", why);
        return;
    }
    if (r->rollback_asked) { /* it ended before the stop reached it: the rollback still runs */
        start_rollback(r);
        return;
    }
    log_info("migration %s: expanded; backfilling on the proxy's event loop", r->name);
    enter_phase(r, RP_BACKFILLING);
    load_state(r);
}

static void run_expand(struct migration_runner *r)
{
    give_slot_to_step(r);
    int rc = engine_worker_run(&r->worker, ENGINE_JOB_EXPAND, r->engine_db, r->expand_body, r->expand_body_len,
                               after_expand, r);
    free((char *)r->expand_body);
    r->expand_body = NULL;
    if (rc != 0)
        fail(r, "%s", r->worker.why);
}

/* The expand is this proxy's unless another engine took the lock first,
 * or the migration ended meanwhile (the resume found none in progress):
 * then the table says what happens, and this proxy follows it. */
static void after_redo_expand(void *ctx, int code, const char *why)
{
    struct migration_runner *r = ctx;
    if (code != 0 && !r->rollback_asked && (code == ENGINE_INVALID || strstr(why, ENGINE_LOCK_HELD_MSG))) {
        log_info("migration %s: the expand is not redone here (%s); following it", r->name, why);
        r->following = 1;
        r->table_status[0] = '\0';
        load_state(r);
        return;
    }
    after_expand(ctx, code, why);
}

/* The expand an engine left in the table when it died, undone and redone
 * as `migrate resume` does; a rollback asked for meanwhile stops it. */
static void redo_expand(struct migration_runner *r)
{
    give_slot_to_step(r);
    if (engine_worker_run(&r->worker, ENGINE_JOB_EXPAND, r->engine_db, NULL, 0, after_redo_expand, r) != 0)
        fail(r, "%s", r->worker.why);
}

/* Drained: every session is at a transaction boundary, and the next thing
 * each one sends goes to the old shape (session.c: follow_route). Nobody
 * needs holding longer. */
static void on_route_drained(void *ctx, int drained, uint64_t waited_us)
{
    struct migration_runner *r = ctx;
    r->route_holding = 0;
    if (drained) {
        struct relay_hold_stats st;
        relay_release(r->relay, &st);
        log_info("migration %s: every session is routed to the old shape (traffic held %.2f ms, %u messages"
                 " waited); expanding", r->name, st.held_ms, st.held_messages);
        run_expand(r);
        return;
    }
    if (++r->route_attempts < ROUTE_ATTEMPTS) {
        long delay = retry_delay_ms(RETRY_FIRST_MS, r->route_attempts, &r->route_seed);
        log_warn("migration %s: sessions still inside transactions after %llu ms; nothing changed yet, traffic"
                 " flows, trying again in %ld ms", r->name, (unsigned long long)(waited_us / 1000), delay);
        schedule(r, delay, route_then_expand);
        return;
    }
    json_t *busy = relay_busy_sessions(r->relay);
    char *who = json_dumps(busy, JSON_COMPACT);
    json_decref(busy);
    fail(r, "the sessions could not be routed to the old shape before expand: %d times some stayed inside a"
         " transaction longer than %d ms (%.500s); nothing was changed", ROUTE_ATTEMPTS,
         r->cut_opt.drain_timeout_ms, who ? who : "?");
    free(who);
}

/* Before expand changes a table, every session must have left the
 * transaction it was in when the migration started: its next one begins
 * on the old shape. The same brief hold at transaction boundaries as the
 * cutover's, released as soon as everyone is at one. */
static void route_then_expand(struct migration_runner *r)
{
    if (relay_hold(r->relay, "route", "routing sessions to the old shape before expand", r->cut_opt.drain_timeout_ms,
                   on_route_drained, r) != 0) {
        fail(r, "cannot hold traffic to route the sessions; nothing was changed");
        return;
    }
    r->route_holding = 1;
}

static void set_name(struct migration_runner *r, const char *name)
{
    free(r->name);
    r->name = strdup(name);
    r->bfr.progress.migration = r->name; /* tags the backfill's lines in the log */
    /* the schemas' names as they are, quoted by the sessions routed to them */
    snprintf(r->version_schema, sizeof r->version_schema, MIG_VERSION_SCHEMA_FMT, name);
    snprintf(r->old_schema, sizeof r->old_schema, MIG_OLD_SCHEMA_FMT, name);
}

/* A batch aims at target_ms (tens of ms); a slow one runs into seconds. */
static const double batch_bounds_s[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

static void reset_metrics(struct migration_runner *r)
{
    histogram_init(&r->batch_seconds, batch_bounds_s, (int)(sizeof batch_bounds_s / sizeof batch_bounds_s[0]));
    cutover_totals_reset(&r->cut.totals);
}

static void reset_migration(struct migration_runner *r)
{
    bf_runner_reset(&r->bfr);
    if (r->have_plan)
        mig_plan_free(&r->plan);
    if (r->have_mig)
        mig_free(&r->mig);
    r->have_plan = r->have_mig = 0;
    r->error[0] = '\0';
    cutover_abort(&r->cut);
    reset_metrics(r);
    r->have_cut_rep = 0;
    r->stop_backfill = 0;
    r->rollback_asked = 0;
    settings_throttle_defaults(&r->thr);
    r->throttle_dirty = 0;
    r->table_status[0] = '\0';
    r->lock_tries = r->reconnects = 0;
    r->step_status = 0;
}

static void handle_start(struct migration_runner *r, const struct runner_request *q)
{
    struct waiter w = {q->answer, q->ctx};
    if (!admitted(r, MIG_REQ_START, &w))
        return;
    char err[1024];
    reset_migration(r);
    struct migration *chain = NULL;
    size_t n = 0;
    int is_chain = mig_parse_chain(q->body, q->body_len, &chain, &n, err, sizeof err);
    /* .sql files: checked here, converted with the catalog by the worker */
    if (is_chain == 0)
        is_chain = sql_load_chain_from_body(q->body, q->body_len, NULL, &chain, &n, err, sizeof err);
    int is_sql = is_chain ? 0 : sql_load_from_body(q->body, q->body_len, NULL, &r->mig, err, sizeof err);
    if (is_chain < 0 || is_sql < 0 ||
        (!is_chain && !is_sql && mig_parse(q->body, q->body_len, "request body", &r->mig, err, sizeof err))) {
        answer(&w, 400, error_json(err));
        return;
    }
    /* a chain's head names the migration; which ones are pending (merged or
     * not) the engine decides, and the stored migration is loaded after expand */
    const struct migration *head = is_chain ? &chain[n - 1] : &r->mig;
    r->have_mig = !is_chain && !is_sql; /* else loaded as expand stored it */
    r->following = 0;
    r->follow_since_ms = 0;
    settings_throttle_from_migration(&r->thr, &head->backfill);
    set_name(r, head->name);
    mig_free_list(chain, n);
    if (is_sql)
        mig_free(&r->mig);
    /* The worker's engine takes the engine lock: this proxy must not hold it. */
    if (r->holds_lock) {
        pgasync_close(&r->db);
        r->holds_lock = 0;
    }
    free((char *)r->expand_body);
    r->expand_body = malloc(q->body_len ? q->body_len : 1);
    if (!r->expand_body) {
        answer(&w, 500, error_json("out of memory"));
        return;
    }
    memcpy((char *)r->expand_body, q->body, q->body_len);
    r->expand_body_len = q->body_len;
    r->route_attempts = 0;
    r->cut_opt = q->cutover; /* its drain_timeout_ms bounds each drain before expand */
    enter_phase(r, RP_EXPANDING); /* routes every session to the old shape */
    answer(&w, 202, json_pack("{s:s,s:s}", "name", r->name, "phase", mig_phase_word(r->phase)));
    route_then_expand(r);
}

/* ---- who blocks the worker step ---- */

/* The worker step (expand, validations, rollback) holds the engine's
 * advisory lock. Who blocks it: whoever its backend waits for right now,
 * and, since a step with a short lock_timeout waits in spurts between
 * retries, whoever has held a lock on a migrated table for over a second
 * ($1: the tables). pgtandem's own connections are left out. */
static const char BLOCKED_BY_SQL[] =
    "WITH engine AS (SELECT l.pid FROM pg_locks l"
    "   WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
    "     AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    "     AND l.classid::bigint = (" ENGINE_LOCK_KEY "::bigint >> 32)"
    "     AND l.objid::bigint = (" ENGINE_LOCK_KEY "::bigint & 4294967295)),"
    " waiting AS (SELECT bp.pid AS blocker, e.pid AS waiter FROM engine e"
    "   CROSS JOIN LATERAL unnest(pg_blocking_pids(e.pid)) AS bp(pid)),"
    " holding AS (SELECT l.pid AS blocker, e.pid AS waiter FROM engine e JOIN pg_locks l ON l.pid <> e.pid"
    "   WHERE l.locktype = 'relation' AND l.granted"
    "     AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    "     AND l.relation IN (SELECT to_regclass(t) FROM unnest($1::text[]) t)),"
    " who AS (SELECT blocker, waiter, true AS now FROM waiting"
    "   UNION SELECT blocker, waiter, false FROM holding WHERE blocker NOT IN (SELECT blocker FROM waiting))"
    " SELECT coalesce(json_agg(json_build_object('pid', b.pid, 'application_name', b.application_name,"
    "   'state', b.state, 'xact_start', b.xact_start, 'query_start', b.query_start, 'query', left(b.query, 200),"
    "   'waiting_now', who.now, 'waiting_pid', w.pid, 'waiting_query', left(w.query, 200))"
    "   ORDER BY who.now DESC, b.xact_start), '[]')"
    " FROM who JOIN pg_stat_activity b ON b.pid = who.blocker JOIN pg_stat_activity w ON w.pid = who.waiter"
    " WHERE b.pid <> pg_backend_pid() AND coalesce(b.application_name, '') NOT LIKE 'pgtandem%'"
    "   AND (who.now OR b.xact_start < clock_timestamp() - interval '1 second')";

static char *tables_literal(const struct migration_runner *r);

#define BLOCKED_POLL_MS 1000
#define BLOCKED_LOG_MS 5000   /* a WARN every few seconds while it waits */
#define BLOCKED_KEEP_MS 10000 /* a step that retries waits in spurts: the last blocker stays shown this long */

static const char *field(json_t *o, const char *key, const char *absent)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : absent;
}

/* A rollback whose step waits for another session's lock is not kept
 * waiting for it (the lifecycle's rule): it is answered now, naming who
 * holds the lock, and goes on by itself once that one lets go. */
static void answer_rollback_if_blocked(struct migration_runner *r)
{
    int status = mig_waiter_on_blocked(MIG_WAIT_ROLLBACK, r->phase);
    if (!r->rollback_w.fn || !status || json_array_size(r->blocked_by) == 0)
        return;
    json_t *b = json_array_get(r->blocked_by, 0);
    char msg[600];
    snprintf(msg, sizeof msg, "the rollback of %s goes on by itself once pid %lld (application_name '%.60s', %.40s,"
             " transaction since %.40s) lets go of its lock on a migrated table%s; GET /migrations/current follows"
             " it", r->name, (long long)json_integer_value(json_object_get(b, "pid")), field(b, "application_name", ""),
             field(b, "state", "?"), field(b, "xact_start", "-"),
             json_array_size(r->blocked_by) > 1 ? " (and the others in blocked_by)" : "");
    log_warn("migration %s: rollback accepted: %s", r->name, msg);
    answer(&r->rollback_w, status, json_pack("{s:s,s:s,s:s,s:O}", "status", mig_phase_word(r->phase), "name", r->name,
                                             "message", msg, "blocked_by", r->blocked_by));
}

static void log_blockers(struct migration_runner *r)
{
    json_t *b = json_array_get(r->blocked_by, 0);
    log_warn("migration %s: the %s step waits for a lock held by pid %lld (application_name '%s', %s, transaction"
             " since %s, last query: %.120s)%s; its statement: %.120s",
             r->name ? r->name : "-", mig_phase_word(r->phase), (long long)json_integer_value(json_object_get(b, "pid")),
             field(b, "application_name", ""), field(b, "state", "?"), field(b, "xact_start", "-"),
             field(b, "query", ""), json_array_size(r->blocked_by) > 1 ? " and others" : "",
             field(b, "waiting_query", ""));
    r->blocked_logged_ms = clock_now_ms();
}

static void on_blockers(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)sqlstate;
    struct migration_runner *r = ctx;
    r->polling_blockers = 0;
    double now = clock_now_ms();
    json_t *found = !error && res && PQntuples(res) == 1 ? json_loads(PQgetvalue(res, 0, 0), 0, NULL) : NULL;
    if (json_array_size(found) > 0) {
        json_decref(r->blocked_by);
        r->blocked_by = found;
        r->blocked_seen_ms = now;
        if (now - r->blocked_logged_ms >= BLOCKED_LOG_MS)
            log_blockers(r);
        answer_rollback_if_blocked(r);
    } else {
        json_decref(found);
        if (r->blocked_by && now - r->blocked_seen_ms > BLOCKED_KEEP_MS) {
            json_decref(r->blocked_by);
            r->blocked_by = NULL;
            r->blocked_logged_ms = 0;
        }
    }
    watch_blockers(r);
}

static void poll_blockers(struct migration_runner *r)
{
    if (!mig_phase_runs_step(r->phase) || r->db.busy)
        return;
    char *tables = r->have_mig ? tables_literal(r) : NULL;
    const char *values[1] = {tables ? tables : "{}"};
    if (pgasync_send(&r->db, BLOCKED_BY_SQL, 1, values, on_blockers, r) == 0)
        r->polling_blockers = 1;
    else
        watch_blockers(r);
    free(tables);
}

static void blocked_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct migration_runner *r = arg;
    if (!mig_phase_runs_step(r->phase))
        return;
    if (r->db.busy) {
        watch_blockers(r);
    } else if (!pgasync_ready(&r->db) && !r->after_connect) {
        with_connection(r, poll_blockers); /* the engine connection comes back by itself */
        if (!r->db.busy)
            watch_blockers(r);
    } else if (pgasync_ready(&r->db)) {
        poll_blockers(r);
    } else {
        watch_blockers(r);
    }
}

/* Polls while a worker step runs; forgets the blockers otherwise. */
static void watch_blockers(struct migration_runner *r)
{
    if (!mig_phase_runs_step(r->phase)) {
        if (r->polling_blockers && !r->holds_lock) {
            /* the next step needs the connection now, not after the answer */
            pgasync_close(&r->db);
            r->polling_blockers = 0;
        }
        json_decref(r->blocked_by);
        r->blocked_by = NULL;
        r->blocked_logged_ms = 0;
        if (r->blocked_timer)
            evtimer_del(r->blocked_timer);
        return;
    }
    if (!r->blocked_timer)
        r->blocked_timer = evtimer_new(r->base, blocked_timer_cb, r);
    struct timeval tv = {BLOCKED_POLL_MS / 1000, (BLOCKED_POLL_MS % 1000) * 1000};
    if (r->blocked_timer && !evtimer_pending(r->blocked_timer, NULL) && evtimer_add(r->blocked_timer, &tv) != 0)
        log_warn("migration %s: cannot arm the blocker poll; blockers are not reported", r->name ? r->name : "-");
}

/* ---- start: connection slots first ---- */

/* The slots a new connection of the engine's role can still take: client
 * backends count against max_connections (background workers and WAL
 * senders have slots of their own); a role that is not superuser cannot
 * use the reserved ones. */
static const char FREE_SLOTS_SQL[] =
    "SELECT current_setting('max_connections')::int"
    " - CASE WHEN r.rolsuper THEN 0 ELSE current_setting('superuser_reserved_connections')::int"
    "   + coalesce(nullif(current_setting('reserved_connections', true), '')::int, 0) END"
    " - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int"
    " FROM pg_roles r WHERE r.rolname = current_user";

/* The expand runs in a process of its own on a new connection (so do the
 * validations and a rollback later, one at a time); the proxy's engine and
 * fleet connections are open already. */
#define START_NEEDS_SLOTS 1

static void answer_start_check(struct migration_runner *r, int status, const char *why)
{
    free((char *)r->start_q.body);
    r->start_q.body = NULL;
    answer(&r->start_w, status, error_json(why));
}

static void on_free_slots(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)sqlstate;
    struct migration_runner *r = ctx;
    if (!r->start_w.fn) { /* the requester went away */
        answer_start_check(r, 500, "");
        return;
    }
    if (error || !res || PQntuples(res) != 1) {
        char why[1200];
        snprintf(why, sizeof why, "cannot count the database's free connection slots: %s",
                 error ? error : "no answer");
        answer_start_check(r, 503, why);
        return;
    }
    int free_slots = atoi(PQgetvalue(res, 0, 0));
    if (free_slots < START_NEEDS_SLOTS) {
        char why[700];
        snprintf(why, sizeof why,
                 "the database has %d free connection slots; the migration needs %d: one for the engine worker "
                 "that expands, validates or rolls back (the proxy's engine and fleet connections are open "
                 "already). Nothing was changed. Free a slot (close idle clients, lower a pool's size) or raise "
                 "max_connections, then start again",
                 free_slots < 0 ? 0 : free_slots, START_NEEDS_SLOTS);
        log_warn("migration start refused: %s", why);
        answer_start_check(r, 503, why);
        return;
    }
    struct runner_request q = r->start_q;
    q.answer = r->start_w.fn;
    q.ctx = r->start_w.ctx;
    r->start_w.fn = NULL;
    r->start_w.ctx = NULL;
    r->start_q.body = NULL;
    handle_start(r, &q);
    free((char *)q.body);
}

static void send_free_slots(struct migration_runner *r)
{
    if (pgasync_send(&r->db, FREE_SLOTS_SQL, 0, NULL, on_free_slots, r) != 0)
        answer_start_check(r, 503, r->db.error);
}

/* Before anything changes, the connections the migration will need must
 * be there to have: a start that cannot get them is refused with nothing
 * done, instead of failing halfway through the expand. */
static void check_slots_then_start(struct migration_runner *r, const struct runner_request *q)
{
    struct waiter w = {q->answer, q->ctx};
    if (!admitted(r, MIG_REQ_START, &w))
        return;
    if (r->db.busy) {
        handle_start(r, q); /* goes ahead without the check while the connection is busy */
        return;
    }
    char *body = malloc(q->body_len + 1);
    if (!body) {
        answer(&w, 500, error_json("out of memory"));
        return;
    }
    memcpy(body, q->body, q->body_len);
    body[q->body_len] = '\0';
    r->start_q = *q;
    r->start_q.body = body;
    r->start_w = w;
    with_connection(r, send_free_slots);
}

/* ---- complete: the cutover ---- */

/* The migrated tables as a Postgres text[] literal, for the blocker check. */
static char *tables_literal(const struct migration_runner *r)
{
    json_t *seen = json_object();
    size_t cap = 3;
    for (size_t i = 0; i < r->mig.nops; i++) {
        const struct mig_op *op = &r->mig.ops[i];
        if (!op->table)
            continue;
        char *q = mig_quote_qname(op->schema ? op->schema : "public", op->table);
        if (q && !json_object_get(seen, q)) {
            json_object_set_new(seen, q, json_true());
            cap += 2 * strlen(q) + 4;
        }
        free(q);
    }
    char *out = malloc(cap);
    if (out) {
        size_t n = 0;
        out[n++] = '{';
        const char *key;
        json_t *v;
        json_object_foreach(seen, key, v) {
            (void)v;
            if (n > 1)
                out[n++] = ',';
            out[n++] = '"';
            for (const char *p = key; *p; p++) {
                if (*p == '"' || *p == '\\')
                    out[n++] = '\\';
                out[n++] = *p;
            }
            out[n++] = '"';
        }
        out[n++] = '}';
        out[n] = '\0';
    }
    json_decref(seen);
    return out;
}

/* The contract's statements, then (tail) the state update. */
static char *contract_sql(void *ctx, const struct cutover_report *rep, int tail)
{
    struct migration_runner *r = ctx;
    PGconn *conn = r->db.conn;
    if (tail)
        return r->cut_kind == MIG_CUT_SWITCH   ? mig_state_status_sql(conn, r->name, MIG_ST_SWITCHED)
               : r->cut_kind == MIG_CUT_REVERT ? mig_state_status_sql(conn, r->name, MIG_ST_ACTIVE)
                                           : mig_state_completed_sql(conn, r->name, r->have_mig ? r->mig.merges : NULL,
                                                                     rep->attempts, rep->lock_wait_ms);
    if (r->cut_kind != MIG_CUT_CONTRACT) /* nothing changes but who sees which shape */
        return strdup("SELECT 1");
    struct mig_str s = {0};
    mig_str_add(&s, "");
    for (size_t i = 0; i < r->plan.contract.n; i++)
        mig_str_addf(&s, "%s;\n", r->plan.contract.v[i].sql);
    mig_str_add(&s, "SELECT 1");
    return mig_str_take(&s);
}

static void run_post_steps(struct migration_runner *r);

static void on_post_step(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    (void)sqlstate;
    struct migration_runner *r = ctx;
    if (error)
        log_error("migration %s is complete but a post-contract validation failed: %s", r->name, error);
    r->cur++;
    run_post_steps(r);
}

/* Validations that scan run after the contract, with traffic flowing. */
static void run_post_steps(struct migration_runner *r)
{
    if (r->cur >= r->plan.post.n) {
        log_info("migration %s completed", r->name);
        enter_phase(r, RP_COMPLETED);
        return;
    }
    if (pgasync_send(&r->db, r->plan.post.v[r->cur].sql, 0, NULL, on_post_step, r) != 0) {
        log_error("migration %s: post-contract step: %s", r->name, r->db.error);
        enter_phase(r, RP_COMPLETED);
    }
}


static void cutover_done(void *ctx, enum cutover_outcome outcome, const struct cutover_report *rep)
{
    struct migration_runner *r = ctx;
    (void)rep; /* the same report stays in r->cut.rep */
    r->have_cut_rep = 1;
    if (outcome == CUTOVER_COMMITTED && r->cut_kind == MIG_CUT_SWITCH) {
        r->error[0] = '\0';
        log_info("migration %s: every session sees the new shape; the old one is kept for a revert for %d s"
                 " (`pgtandem migrate revert`), then dropped (`pgtandem migrate finalize` drops it now)",
                 r->name, r->cut_opt.revert_window_s);
        enter_phase(r, RP_SWITCHED);
        struct timeval tv = {r->cut_opt.revert_window_s, 0};
        if (evtimer_add(r->window_timer, &tv) != 0)
            log_warn("migration %s: no timer for the revert window's end; `pgtandem migrate finalize` ends it",
                     r->name);
        return;
    }
    if (outcome == CUTOVER_COMMITTED && r->cut_kind == MIG_CUT_REVERT) {
        r->error[0] = '\0';
        log_info("migration %s: every session is back on the old shape; rolling the migration back", r->name);
        start_rollback(r); /* the revert's request is answered when the rollback has ended */
        return;
    }
    if (outcome == CUTOVER_COMMITTED) {
        r->error[0] = '\0';
        r->cur = 0;
        run_post_steps(r);
        return;
    }
    snprintf(r->error, sizeof r->error, "%s", rep->error);
    /* A lost connection leaves it open whether COMMIT arrived: the state
     * row, which committed with the contract or not at all, decides. */
    if (!pgasync_ready(&r->db)) {
        with_connection(r, send_load_state);
        return;
    }
    enter_phase(r, r->cut_from);
}

/* Committed, traffic still held: the shape each session gets from its next
 * transaction on is pushed before anyone moves. */
static void cutover_committed(void *ctx)
{
    struct migration_runner *r = ctx;
    if (r->cut_kind == MIG_CUT_SWITCH)
        route_for(r, RP_SWITCHED);
    else if (r->cut_kind == MIG_CUT_REVERT)
        route_for(r, RP_ROLLING_BACK);
}

/* Traffic may be held while a statement of the cutover is in flight: one
 * unanswered past its own budgets (drain, lock_timeout, statement_timeout)
 * means a dead connection, found in seconds. The questions before the hold
 * (who of the old release is left, the state row) get the same bound: the
 * complete's caller waits for them. */
static void bound_by_cutover(struct migration_runner *r)
{
    const struct cutover_options *o = &r->cut_opt;
    r->db.watchdog_ms = o->drain_timeout_ms + o->lock_timeout_ms + o->statement_budget_ms + 2000;
}

static void begin_cutover(struct migration_runner *r)
{
    bound_by_cutover(r);
    char *tables = tables_literal(r);
    r->cut.committed = cutover_committed;
    int rc = tables ? cutover_start(&r->cut, r->base, r->relay, r->fleet, &r->db, &r->cut_opt, r->name, tables,
                                    contract_sql, cutover_done, r)
                    : -1;
    free(tables);
    if (rc != 0) {
        snprintf(r->error, sizeof r->error, "out of memory starting the cutover");
        enter_phase(r, r->cut_from);
    }
}

/* Another process may have completed or rolled back the migration since
 * this proxy last looked: the state row decides, before anyone is held. */
static void on_recheck(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    struct migration_runner *r = ctx;
    if (error || !res || PQntuples(res) != 1) {
        snprintf(r->error, sizeof r->error, "reading the migration's state: %.900s",
                 error ? error : "the migration is no longer recorded");
        if (connection_lost(sqlstate))
            pgasync_close(&r->db);
        enter_phase(r, r->cut_from);
        return;
    }
    if (strcmp(PQgetvalue(res, 0, 1), phase_status(r, r->cut_from)) != 0) {
        on_state_loaded(ctx, res, error, sqlstate);
        return;
    }
    begin_cutover(r);
}

static void recheck_then_cutover(struct migration_runner *r)
{
    const char *values[1] = {r->name};
    if (pgasync_send(&r->db, MIG_STATE_LOAD_SQL, 1, values, on_recheck, r) != 0)
        on_recheck(r, NULL, r->db.error, "08006");
}

/* Rows that violate a check leave the migration active, nobody held. */
static void after_checks(void *ctx, int code, const char *why)
{
    struct migration_runner *r = ctx;
    r->step_status = code;
    if (code != 0) {
        snprintf(r->error, sizeof r->error, "%s", why);
        enter_phase(r, RP_ACTIVE);
        return;
    }
    with_connection(r, recheck_then_cutover);
}

/* Sessions of the release a complete retires (every session that did not
 * declare this migration): this proxy's, named, and the other live proxies'
 * counts as of their last heartbeat. */
static json_t *old_release_left(const struct migration_runner *r, int *count)
{
    json_t *left = relay_sessions_not_of(r->relay, r->name);
    *count = (int)json_array_size(left);
    json_t *fleet = r->fleet ? fleet_status_json(r->fleet) : NULL;
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(fleet, "members"), i, m) {
        const char *id = json_string_value(json_object_get(m, "id"));
        if (!json_is_true(json_object_get(m, "live")) || !id || !strcmp(id, fleet_id(r->fleet)))
            continue;
        const char *key;
        json_t *n;
        json_object_foreach(json_object_get(m, "sessions"), key, n) {
            if (strcmp(key, r->name) == 0 || json_integer_value(n) <= 0)
                continue;
            *count += (int)json_integer_value(n);
            json_array_append_new(left, json_pack("{s:O,s:s,s:I}", "proxy", json_object_get(m, "id"), "version",
                                                  key, "sessions", json_integer_value(n)));
        }
    }
    json_decref(fleet);
    return left;
}

/* What each backend last ran and how long it has been idle, as Postgres
 * keeps it ($1: the backends' PIDs as a JSON array). */
static const char LAST_STATEMENTS_SQL[] =
    "SELECT pid, left(query, 60), state, (extract(epoch FROM clock_timestamp() - state_change) * 1000)::bigint"
    "  FROM pg_stat_activity WHERE pid IN (SELECT jsonb_array_elements_text($1::jsonb)::int)";

/* "session 7 (127.0.0.1:5123, billing-worker, idle for 350 ms, last: SELECT ...)";
 * res (may be NULL) has LAST_STATEMENTS_SQL's rows. */
static void name_sessions(json_t *left, const PGresult *res, char *out, size_t cap)
{
    size_t used = 0, i;
    json_t *s;
    out[0] = '\0';
    json_array_foreach(left, i, s) {
        int n;
        const char *app = json_string_value(json_object_get(s, "application_name"));
        json_int_t pid = json_integer_value(json_object_get(s, "backend_pid"));
        int row = -1;
        for (int k = 0; res && pid && k < PQntuples(res); k++)
            if (atoll(PQgetvalue(res, k, 0)) == pid)
                row = k;
        char what[200];
        if (row < 0)
            snprintf(what, sizeof what, "%s, its last statement unknown", json_string_value(json_object_get(s, "state")));
        else if (!strcmp(PQgetvalue(res, row, 2), "idle"))
            snprintf(what, sizeof what, "idle for %s ms, last: %s", PQgetvalue(res, row, 3), PQgetvalue(res, row, 1));
        else
            snprintf(what, sizeof what, "%s, running: %s", PQgetvalue(res, row, 2), PQgetvalue(res, row, 1));
        if (json_object_get(s, "proxy"))
            n = snprintf(out + used, cap - used, "%s%lld through proxy %s", used ? "; " : "",
                         (long long)json_integer_value(json_object_get(s, "sessions")),
                         json_string_value(json_object_get(s, "proxy")));
        else
            n = snprintf(out + used, cap - used, "%ssession %lld (%s, %s, %s)", used ? "; " : "",
                         (long long)json_integer_value(json_object_get(s, "id")),
                         json_string_value(json_object_get(s, "client")),
                         app && app[0] ? app : "no application_name", what);
        if (n < 0 || (size_t)n >= cap - used)
            return;
        used += (size_t)n;
    }
}

static void checks_then_cutover(struct migration_runner *r);

/* LAST_STATEMENTS_SQL answered: the complete is refused, naming who is left. */
static void on_last_statements(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    struct migration_runner *r = ctx;
    int count = 0;
    json_t *left = old_release_left(r, &count);
    char who[700];
    name_sessions(left, error ? NULL : res, who, sizeof who);
    json_decref(left);
    if (error) { /* the question went unanswered: that is why the complete stops, whoever is connected */
        r->db_unavailable = connection_lost(sqlstate) || !pgasync_ready(&r->db);
        char also[900] = "";
        if (count > 0)
            snprintf(also, sizeof also, "; besides, %d session%s of the old release %s still connected: %.700s", count,
                     count == 1 ? "" : "s", count == 1 ? "is" : "are", who);
        snprintf(r->error, sizeof r->error, "cannot complete now: %.480s%.480s", error, also);
        log_warn("migration %s: complete refused: %s", r->name, r->error);
        enter_phase(r, r->cut_from); /* answers the complete: 503 (or 409) with r->error */
        return;
    }
    if (count == 0) { /* the old release left while Postgres was asked */
        checks_then_cutover(r);
        return;
    }
    snprintf(r->error, sizeof r->error, "%d session%s of the old release (no pgtandem.version, or another one than"
             " %.40s) %s still connected: %.700s; they would see the old shape disappear. Retire the old release first,"
             " or complete with force", count, count == 1 ? "" : "s", r->name, count == 1 ? "is" : "are", who);
    log_warn("migration %s: complete refused: %s", r->name, r->error);
    enter_phase(r, r->cut_from); /* answers the complete: 409 with r->error */
}

/* complete retires the old shape: refused while its release is still
 * connected through any proxy of the fleet, unless forced (then said in
 * the log). What the sessions last ran is asked of Postgres only then. */
static void refuse_while_old_release_left(struct migration_runner *r)
{
    int count = 0;
    json_t *left = old_release_left(r, &count);
    json_t *pids = json_array();
    size_t i;
    json_t *s;
    json_array_foreach(left, i, s)
        if (json_object_get(s, "backend_pid"))
            json_array_append(pids, json_object_get(s, "backend_pid"));
    char *text = json_dumps(pids, JSON_COMPACT);
    json_decref(pids);
    if (count > 0 && r->cut_opt.force) {
        char who[900];
        name_sessions(left, NULL, who, sizeof who);
        log_warn("migration %s: completing with force while %d session%s of the old release %s connected: %s",
                 r->name, count, count == 1 ? "" : "s", count == 1 ? "is" : "are", who);
    }
    json_decref(left);
    const char *values[1] = {text ? text : "[]"};
    if (count == 0 || r->cut_opt.force)
        checks_then_cutover(r);
    else if (pgasync_send(&r->db, LAST_STATEMENTS_SQL, 1, values, on_last_statements, r) != 0)
        on_last_statements(r, NULL, r->db.error, NULL);
    free(text);
}

/* Checks that scan the table run before anyone is held, on the worker,
 * with traffic flowing; then the state row is read again. */
static void checks_then_cutover(struct migration_runner *r)
{
    if (r->plan.nchecks == 0) {
        recheck_then_cutover(r);
        return;
    }
    give_slot_to_step(r);
    if (engine_worker_run(&r->worker, ENGINE_JOB_CHECK, r->engine_db, NULL, 0, after_checks, r) != 0) {
        snprintf(r->error, sizeof r->error, "%.1000s", r->worker.why);
        enter_phase(r, RP_ACTIVE);
    }
}

static void handle_complete(struct migration_runner *r, const struct runner_request *q)
{
    struct waiter w = {q->answer, q->ctx};
    if (!admitted(r, MIG_REQ_COMPLETE, &w))
        return;
    char why[512];
    if (q->cutover.revert_window_s > 0 && r->have_mig && mig_revert_blocker(&r->mig, why, sizeof why) >= 0) {
        char msg[700];
        snprintf(msg, sizeof msg, "migration %s cannot be reverted after complete: %s; complete it without a revert"
                 " window (the old shape goes at once)", r->name, why);
        answer(&w, 409, error_json(msg));
        return;
    }
    r->cut_kind = q->cutover.revert_window_s > 0 ? MIG_CUT_SWITCH : MIG_CUT_CONTRACT;
    r->cut_from = RP_ACTIVE;
    r->cut_opt = q->cutover;
    r->have_cut_rep = 0;
    r->db_unavailable = 0;
    r->error[0] = '\0';
    enter_phase(r, RP_COMPLETING);
    r->complete_w = w;
    bound_by_cutover(r);
    with_connection(r, refuse_while_old_release_left);
}

/* finalize (the old shape goes: the contract) and revert (every session
 * back to the old shape, then the rollback) start from switched, under
 * the same hold as the cutover; the state row is read again first. */
static void begin_from_switched(struct migration_runner *r, enum mig_cut kind, const struct cutover_options *o,
                                const struct waiter *w)
{
    evtimer_del(r->window_timer);
    r->cut_kind = kind;
    r->cut_from = RP_SWITCHED;
    int window = r->cut_opt.revert_window_s;
    if (o)
        r->cut_opt = *o;
    r->cut_opt.revert_window_s = window;
    r->have_cut_rep = 0;
    r->db_unavailable = 0;
    r->error[0] = '\0';
    enter_phase(r, RP_COMPLETING);
    if (w)
        r->complete_w = *w;
    log_info("migration %s: %s", r->name, kind == MIG_CUT_REVERT ? "reverting to the old shape" : "finalizing: the old"
             " shape goes");
    bound_by_cutover(r);
    with_connection(r, recheck_then_cutover);
}

/* The revert window ran out: finalize. */
static void window_ended(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct migration_runner *r = arg;
    if (r->phase == RP_SWITCHED)
        begin_from_switched(r, MIG_CUT_CONTRACT, NULL, NULL);
}

static void handle_finalize_or_revert(struct migration_runner *r, const struct runner_request *q)
{
    struct waiter w = {q->answer, q->ctx};
    int revert = q->op == RUNNER_REVERT;
    if (!admitted(r, revert ? MIG_REQ_REVERT : MIG_REQ_FINALIZE, &w))
        return;
    begin_from_switched(r, revert ? MIG_CUT_REVERT : MIG_CUT_CONTRACT, &q->cutover, &w);
}

/* ---- rollback ---- */

/* A rollback that failed left the state row as it was, and that row is the
 * truth again: forgetting what it said makes the fleet's next poll reload it. */
static void rollback_failed(struct migration_runner *r)
{
    r->table_status[0] = '\0';
    enter_phase(r, RP_FAILED);
}

static void after_rollback(void *ctx, int code, const char *why)
{
    struct migration_runner *r = ctx;
    r->step_status = code;
    if (code == 0) {
        r->error[0] = '\0';
        log_info("migration %s rolled back", r->name);
        enter_phase(r, RP_ROLLED_BACK);
        return;
    }
    snprintf(r->error, sizeof r->error, "rollback: %s", why);
    log_error("migration %s: %s", r->name, r->error);
    rollback_failed(r);
}

static void start_rollback(struct migration_runner *r)
{
    if (r->holds_lock) { /* the worker's rollback takes the engine lock itself */
        pgasync_close(&r->db);
        r->holds_lock = 0;
    }
    r->rollback_asked = 0;
    enter_phase(r, RP_ROLLING_BACK);
    give_slot_to_step(r);
    /* by name: one stopped before it recorded anything has nothing to undo */
    if (engine_worker_run(&r->worker, ENGINE_JOB_ROLLBACK, r->engine_db, r->name, r->name ? strlen(r->name) : 0,
                          after_rollback, r) != 0) {
        snprintf(r->error, sizeof r->error, "%.1000s", r->worker.why);
        rollback_failed(r);
    }
}

/* A rollback asked for while the expand (or the validations) waits, maybe
 * for a lock an idle transaction holds: the step is stopped (its statement
 * cancelled), then rolled back, instead of telling the operator to wait. */
static void stop_engine_step(struct migration_runner *r)
{
    log_warn("migration %s: rollback asked for while %s; stopping that step", r->name, mig_phase_word(r->phase));
    engine_worker_stop(&r->worker); /* its done callback fails the step; the rollback asked for runs */
}

static void handle_rollback(struct migration_runner *r, const struct runner_request *q)
{
    struct waiter w = {q->answer, q->ctx};
    if (!admitted(r, MIG_REQ_ROLLBACK, &w))
        return;
    r->rollback_w = w;
    r->rollback_asked = 1;
    if (mig_phase_runs_step(r->phase) && engine_worker_running(&r->worker)) {
        stop_engine_step(r);
        answer_rollback_if_blocked(r); /* the lock it waits for will hold the rollback's own steps up too */
        return;
    }
    if (r->phase == RP_EXPANDING) {
        /* still routing the sessions before expand: nothing ran yet */
        log_warn("migration %s: rollback asked for before its expand began; not expanding", r->name);
        if (r->route_holding) {
            relay_forget(r->relay, r);
            relay_release(r->relay, NULL);
            r->route_holding = 0;
        }
        free((char *)r->expand_body);
        r->expand_body = NULL;
    }
    if (r->phase == RP_BACKFILLING && engine_worker_running(&r->worker)) {
        /* a failed batch is being diagnosed: the rollback matters more */
        r->stop_backfill = 1;
        engine_worker_stop(&r->worker);
        return;
    }
    if (r->phase == RP_BACKFILLING && (r->db.busy || bf_runner_busy(&r->bfr))) {
        r->stop_backfill = 1; /* the batches in flight end first, then the rollback runs */
        return;
    }
    cancel_timer(r);
    bf_runner_halt(&r->bfr);
    release_lock_then(r, start_rollback);
}

/* ---- status and throttle ---- */

static json_t *backfill_json(const struct migration_runner *r)
{
    return bf_runner_json(&r->bfr, past_backfill(r), r->recorded_rows);
}

/* backfill.c's throttle names, in the words metrics use for label values. */
static const char *throttle_word(const struct migration_runner *r)
{
    return r->phase == RP_BACKFILLING ? bf_runner_throttle_word(&r->bfr) : "none";
}

void runner_metrics(const struct migration_runner *r, struct runner_metrics *out)
{
    struct bf_progress p;
    bf_runner_progress(&r->bfr, past_backfill(r), r->recorded_rows, &p);
    memset(out, 0, sizeof *out);
    out->name = r->phase != RP_IDLE && r->name ? r->name : NULL;
    out->phase = mig_phase_word(r->phase);
    out->phases = mig_phase_words();
    out->nphases = MIG_NPHASES;
    out->rows_done = p.done;
    out->rows_total = p.total;
    out->rows_per_s = p.rate;
    out->progress = p.percent / 100.0;
    out->eta_s = p.all_done || r->phase != RP_BACKFILLING ? 0 : p.rate > 0 ? p.eta_s : -1;
    const char *word = throttle_word(r);
    out->paused = !strcmp(word, "paused");
    out->throttle = out->paused ? "none" : word;
    out->following = r->following && r->phase != RP_COMPLETED;
    out->batch_seconds = &r->batch_seconds;
    out->cutover = &r->cut.totals;
    bf_runner_budget(&r->bfr, &out->budget);
}

static void handle_status(struct migration_runner *r, const struct runner_request *q)
{
    struct waiter w = {q->answer, q->ctx};
    if (!admitted(r, MIG_REQ_STATUS, &w))
        return;
    json_t *body = json_pack("{s:s,s:s,s:o,s:o,s:o}", "name", r->name, "phase", mig_phase_word(r->phase), "error",
                             r->error[0] ? json_string(r->error) : json_null(), "backfill", backfill_json(r),
                             "cutover", cutover_json(r));
    /* exit status 2: the migration was refused before any DDL */
    json_object_set_new(body, "invalid", json_boolean(r->phase == RP_FAILED && r->step_status == 2));
    json_object_set_new(body, "blocked_by", r->blocked_by ? json_incref(r->blocked_by) : json_null());
    json_object_set_new(body, "following", json_boolean(r->following && r->phase != RP_COMPLETED));
    /* what the status page offers: the lifecycle's own answers */
    json_object_set_new(body, "in_progress", json_boolean(mig_phase_in_progress(r->phase)));
    struct mig_facts f;
    runner_facts(r, &f);
    static const enum mig_request acts[] = {MIG_REQ_COMPLETE, MIG_REQ_ROLLBACK, MIG_REQ_FINALIZE, MIG_REQ_REVERT};
    json_t *allowed = json_object();
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++)
        json_object_set_new(allowed, mig_request_word(acts[i]), json_boolean(mig_admit(r->phase, acts[i], &f, NULL, 0) == 0));
    json_object_set_new(body, "allowed", allowed);
    if (r->fleet)
        json_object_set_new(body, "fleet", fleet_status_json(r->fleet));
    answer(&w, 200, body);
}

static void handle_throttle(struct migration_runner *r, const struct runner_request *q)
{
    struct waiter w = {q->answer, q->ctx};
    char err[512];
    struct throttle_settings next = r->thr;
    if (settings_throttle_update(&next, q->body, q->body_len, err, sizeof err) != 0) {
        answer(&w, 400, error_json(err));
        return;
    }
    json_t *before = settings_throttle_json(&r->thr), *after = settings_throttle_json(&next);
    r->thr = next;
    bf_runner_settings_changed(&r->bfr);
    r->throttle_dirty = r->name != NULL;
    /* what this request changed, for the caller and the admin log */
    json_t *changed = json_object();
    const char *key;
    json_t *v;
    json_object_foreach(after, key, v) {
        json_t *old = json_object_get(before, key);
        if (!json_equal(old, v))
            json_object_set_new(changed, key, json_pack("{s:O,s:O}", "from", old, "to", v));
    }
    json_decref(before);
    json_object_set_new(after, "changed", changed);
    answer(&w, 200, after);
}

void runner_request(struct migration_runner *r, const struct runner_request *q)
{
    assert(r && q && q->answer); /* every request is answered: it needs somewhere to go */
    struct waiter w = {q->answer, q->ctx};
    if (!r->engine_db) {
        answer(&w, 503, error_json("no engine database: start the proxy with --engine-db URI "
                                   "(or PGTANDEM_DB / DATABASE_URL)"));
        return;
    }
    switch (q->op) {
    case RUNNER_START: check_slots_then_start(r, q); return;
    case RUNNER_STATUS: handle_status(r, q); return;
    case RUNNER_COMPLETE: handle_complete(r, q); return;
    case RUNNER_ROLLBACK: handle_rollback(r, q); return;
    case RUNNER_FINALIZE:
    case RUNNER_REVERT: handle_finalize_or_revert(r, q); return;
    case RUNNER_THROTTLE: handle_throttle(r, q); return;
    }
    answer(&w, 400, error_json("unknown request"));
}

void runner_forget(struct migration_runner *r, void *ctx)
{
    struct waiter *ws[] = {&r->complete_w, &r->rollback_w, &r->start_w};
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
        if (ws[i]->ctx == ctx)
            ws[i]->fn = NULL, ws[i]->ctx = NULL;
}

/* ---- the migration in the database when the proxy starts ---- */

static void on_latest(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)sqlstate;
    struct migration_runner *r = ctx;
    if (error || !res || PQntuples(res) != 1)
        return; /* no state schema yet, or no migration ever */
    if (r->name) /* the fleet got there first */
        return;
    set_name(r, PQgetvalue(res, 0, 0));
    r->following = 1;
    r->takeover_at_once = 1; /* a restart: no expand of ours is about to take the lock */
    log_info("migration %s is %s in the database; following it", r->name, PQgetvalue(res, 0, 1));
    send_load_state(r);
}

/* This proxy is doing the migration's work (a worker step, a batch, the lock, a
 * cutover, a request waiting): what the table says is its own doing. */
static int working_locally(const struct migration_runner *r)
{
    return engine_worker_running(&r->worker) || r->phase == RP_COMPLETING || r->phase == RP_ROLLING_BACK ||
           r->holds_lock || r->db.busy || r->db.connecting || r->after_connect || r->after_unlock ||
           r->timer_step || r->stop_backfill || r->complete_w.fn || r->rollback_w.fn || r->rollback_asked ||
           bf_runner_active(&r->bfr);
}

/* The fleet saw the most recent migration change (a notification or the
 * heartbeat's poll). A follower in the expand or the backfill tries the
 * engine lock each time, so the step goes on when the engine doing it is
 * gone. */
static void on_fleet_migration(void *ctx, const char *name, const char *status)
{
    struct migration_runner *r = ctx;
    if (!r->engine_db || working_locally(r))
        return;
    int same = r->name && strcmp(r->name, name) == 0;
    /* A status the table already had is not news. After a failure of this
     * proxy's own work (a batch, the expand) the table still says what it
     * said before: reloading would run the failing batch again and hide the
     * error from whoever reads the status. */
    if (same && strcmp(status, r->table_status) == 0 &&
        !((r->phase == RP_BACKFILLING || r->phase == RP_EXPANDING) && r->following))
        return;
    if (!same) {
        reset_migration(r);
        r->follow_since_ms = 0;
        r->takeover_at_once = 0;
        set_name(r, name);
        log_info("migration %s is %s in the database; following it", name, status);
    }
    r->following = 1;
    with_connection(r, send_load_state);
}

static void find_latest(struct migration_runner *r)
{
    if (pgasync_send(&r->db, MIG_STATE_LATEST_SQL, 0, NULL, on_latest, r) != 0)
        log_warn("migration state: %s", r->db.error);
}

static void reconnected(struct migration_runner *r)
{
    (void)r;
}

/* ---- the reserved connection slot ---- */

static void on_slot_reserved(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    (void)sqlstate;
    struct migration_runner *r = ctx;
    if (!error) {
        if (r->reserve_logged)
            log_info("engine: a connection slot is reserved for the migration's next step again");
        r->reserve_logged = 0;
        return;
    }
    pgasync_close(&r->reserve);
    if (!r->reserve_logged)
        log_warn("engine: cannot reserve a connection slot for the migration's next step (%s); "
                 "it will need a free slot when it starts", error);
    r->reserve_logged = 1;
}

/* Held while a migration this proxy runs is in progress and no engine
 * step runs (followers run no steps). */
static void keep_slot_reserved(struct migration_runner *r)
{
    int want = r->engine_db && mig_phase_in_progress(r->phase) && !r->following && !engine_worker_running(&r->worker);
    if (!want) {
        if (!engine_worker_running(&r->worker))
            pgasync_close(&r->reserve);
        return;
    }
    if (r->reserve.conn)
        return; /* open, or opening */
    if (pgasync_connect(&r->reserve, r->engine_db, on_slot_reserved, r) != 0)
        on_slot_reserved(r, NULL, r->reserve.error, NULL);
}

/* The worker connects right after this; Postgres frees the slot when the
 * backend has exited, which the worker's connect waits for (engine_open
 * retries "too many clients" briefly). */
static void give_slot_to_step(struct migration_runner *r)
{
    pgasync_close(&r->reserve);
}

/* A connection lost while idle (a restart, a suspended compute) is opened
 * again within seconds, so /status says the truth and the next step does
 * not start with a failure. */
static void health_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct migration_runner *r = arg;
    if (r->phase != RP_COMPLETING && !pgasync_ready(&r->db) && !r->db.busy && !r->after_connect &&
        !evtimer_pending(r->timer, NULL) && !bf_runner_active(&r->bfr))
        with_connection(r, reconnected);
    keep_slot_reserved(r);
}

struct migration_runner *runner_new(struct event_base *base, struct relay *relay, const char *engine_db,
                                    struct fleet *fleet)
{
    struct migration_runner *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->base = base;
    r->relay = relay;
    r->fleet = fleet;
    r->engine_db = engine_db ? strdup(engine_db) : NULL;
    struct bf_runner_hooks hooks = {.ctx = r, .ended = backfill_ended, .stopping = backfill_stopping,
                                    .idle = backfill_idle, .running = backfill_running};
    int bf_ok = bf_runner_init(&r->bfr, base, relay, r->engine_db, &hooks, &r->batch_seconds) == 0;
    pgasync_init(&r->db, base);
    /* no session-wide statement or lock timeout: backfill and cutover set their own per step */
    pgasync_configure(&r->db, "engine", ENGINE_WATCHDOG_MS, NULL);
    pgasync_init(&r->reserve, base);
    pgasync_configure(&r->reserve, "engine reserve", ENGINE_WATCHDOG_MS, NULL);
    int worker_ok = engine_worker_init(&r->worker, base) == 0;
    settings_throttle_defaults(&r->thr);
    reset_metrics(r);
    r->timer = evtimer_new(base, timer_cb, r);
    r->window_timer = evtimer_new(base, window_ended, r);
    if (!worker_ok || !bf_ok || !r->timer || !r->window_timer || (engine_db && !r->engine_db)) {
        runner_free(r);
        return NULL;
    }
    if (r->engine_db) {
        with_connection(r, find_latest);
        struct timeval every = {HEALTH_CHECK_MS / 1000, (HEALTH_CHECK_MS % 1000) * 1000};
        r->health_timer = event_new(base, -1, EV_PERSIST, health_cb, r);
        if (!r->health_timer || event_add(r->health_timer, &every) != 0)
            log_warn("engine: no health check timer; a lost engine connection is reopened by its next use");
    }
    if (fleet)
        fleet_observe(fleet, on_fleet_migration, r);
    return r;
}

void runner_free(struct migration_runner *r)
{
    if (!r)
        return;
    if (r->fleet)
        fleet_observe(r->fleet, NULL, NULL);
    engine_worker_free(&r->worker);
    cutover_abort(&r->cut);
    if (r->cut.retry_timer)
        event_free(r->cut.retry_timer);
    reset_migration(r);
    bf_runner_free(&r->bfr);
    pgasync_close(&r->db);
    pgasync_close(&r->reserve);
    free((char *)r->start_q.body);
    free((char *)r->expand_body);
    if (r->route_holding) {
        relay_forget(r->relay, r);
        relay_release(r->relay, NULL);
    }
    json_decref(r->blocked_by);
    if (r->blocked_timer)
        event_free(r->blocked_timer);
    if (r->health_timer)
        event_free(r->health_timer);
    if (r->timer)
        event_free(r->timer);
    if (r->window_timer)
        event_free(r->window_timer);
    free(r->engine_db);
    free(r->name);
    free(r);
}

json_t *runner_connection_json(const struct migration_runner *r)
{
    if (!r->engine_db)
        return NULL;
    json_t *o = pgasync_status_json(&r->db);
    json_object_set_new(o, "blocked_by", r->blocked_by ? json_incref(r->blocked_by) : json_null());
    return o;
}

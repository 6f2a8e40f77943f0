/* The engine inside the proxy (see migration_runner.h): the requests, and
 * the one place the phase changes.
 *
 * Phases (migration_lifecycle.h, which says which may follow which and
 * what each request may do in each): expanding (the worker thread) ->
 * backfilling (batches on the loop) -> finishing (worker: validations,
 * status active) -> active -> completing (the cutover, on the loop) ->
 * completed. Rollback runs on the worker from any phase before completed;
 * failed is left by rollback or by a new start.
 *
 * The work of each phase is done by the parts below this file
 * (runner_internal.h lists them); none of them calls back up: each
 * reports how its work ended as an event (on_event), and this file asks
 * the lifecycle what follows (mig_phase_after) and moves there in
 * move_to, which checks the move against the lifecycle's table and
 * answers the requests that wait.
 *
 * The state of record stays in schema pgtandem of the database, so a proxy
 * restart picks up a running backfill where its checkpoint left it, and
 * learns what happened to a migration while it was away. Every proxy of a
 * fleet follows it (fleet.h): a migration started or changed elsewhere is
 * loaded from the table whenever this proxy is not working on it itself;
 * the expand and the backfill are done by whoever holds the engine lock,
 * and a follower takes them over when that one stops. */
#include "migration_runner.h"
#include "runner_internal.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "clock.h"
#include "engine.h"
#include "fleet.h"
#include "log.h"
#include "migration_state.h"
#include "relay_control.h"

static void start_rollback(struct migration_runner *r);

/* ---- admission, and the answers to requests that wait ---- */

/* What the lifecycle's admission rules need to know besides the phase. */
static void runner_facts(const struct migration_runner *r, struct mig_facts *f)
{
    memset(f, 0, sizeof *f);
    f->name = r->name;
    /* the phase's own step: on the worker, or the drain before expand */
    f->step_running = engine_worker_running(&r->worker) || start_routing(r);
    f->following = r->following;
    f->rollback_asked = r->rollback_asked || r->rollback_w.fn != NULL;
    f->start_checking = r->start.w.fn != NULL;
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
    json_t *body = json_pack("{s:s,s:s?,s:s}", "error", why, "name", r->phase != MIG_PH_IDLE ? r->name : NULL,
                             "phase", mig_phase_word(r->phase));
    int retry_ms = mig_admit_retry_ms(r->phase, q, &f);
    if (body && retry_ms)   /* a moment's gap, which the CLI asks again */
        json_object_set_new(body, "retry_after_ms", json_integer(retry_ms));
    runner_answer(&once, status, body);
    return 0;
}

/* A move the lifecycle's table does not allow, or a request left waiting
 * where it cannot be, is a bug in the runner: said loudly, and fatal in
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

/* ---- the one place the phase changes ---- */

/* A failure of this proxy's own work is not written to the table, which
 * keeps saying what it said: table_status stays what it was, so the
 * fleet's poll does not take that status for news. Where the table is the
 * truth again (a rollback or a read of the state that failed),
 * table_status is forgotten and the next poll reloads. cause: the
 * runner's own work, or the status of record read back. */
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
    if (phase != MIG_PH_SWITCHED)
        evtimer_del(r->window_timer); /* the window ended: reverted, finalized, here or elsewhere */
    r->phase = phase;
    if (cause == MIG_BY_WORK)
        r->own_move_ms = clock_now_ms();
    watch_blockers(r);
    if (phase != MIG_PH_COMPLETING)
        r->db.watchdog_ms = ENGINE_WATCHDOG_MS;
    int st = mig_phase_status(phase, r->cut_from);
    if (phase != MIG_PH_FAILED && st >= 0)
        snprintf(r->table_status, sizeof r->table_status, "%s", mig_status_word((enum mig_status)st));
    route_for(r, r->phase);
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

/* Where the lifecycle says the work of this phase goes on event ev. */
static enum mig_phase move_after(struct migration_runner *r, enum mig_event ev)
{
    enum mig_phase to = mig_phase_after(r->phase, ev, r->cut_kind, r->cut_from);
    enter_phase(r, to);
    return to;
}

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
    if (r->holds_lock || !pgasync_ready(&r->db))
        drop_connection(r);
    if (r->rollback_asked || r->rollback_w.fn || r->stop_backfill) {
        r->stop_backfill = 0;
        start_rollback(r);
        return;
    }
    move_after(r, MIG_EV_STEP_FAILED);
}

/* ---- rollback ---- */

/* A rollback that failed left the state row as it was, and that row is the
 * truth again: forgetting what it said makes the fleet's next poll reload it. */
static void rollback_failed(struct migration_runner *r)
{
    r->table_status[0] = '\0';
    move_after(r, MIG_EV_STEP_FAILED);
}

static void after_rollback(void *ctx, int code, const char *why)
{
    struct migration_runner *r = ctx;
    r->step_status = code;
    if (code == 0) {
        r->error[0] = '\0';
        log_info("migration %s rolled back", r->name);
        move_after(r, MIG_EV_STEP_DONE);
        return;
    }
    snprintf(r->error, sizeof r->error, "rollback: %s", why);
    log_error("migration %s: %s", r->name, r->error);
    rollback_failed(r);
}

static void start_rollback(struct migration_runner *r)
{
    if (r->holds_lock) /* the worker's rollback takes the engine lock itself */
        drop_connection(r);
    r->rollback_asked = 0;
    enter_phase(r, MIG_PH_ROLLING_BACK);
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

/* ---- what the parts below report ---- */

static void backfill_stopped(struct migration_runner *r)
{
    r->stop_backfill = 0;
    release_lock_then(r, start_rollback);
}

/* The engine connection could not be opened: the phase stays; what waits
 * on it learns why. */
static void connect_failed(struct migration_runner *r)
{
    if (r->start.w.fn)
        start_check_refused(r, 503, r->error);
    if (r->phase == MIG_PH_COMPLETING) {
        r->db_unavailable = 1;
        move_after(r, MIG_EV_CUTOVER_ABANDONED);
    } else if (r->phase == MIG_PH_BACKFILLING && r->stop_backfill) {
        backfill_stopped(r);
    } else if (r->phase == MIG_PH_BACKFILLING) {
        schedule_backoff(r, load_state);
    } else {
        r->conn.reconnects++; /* the health check tries again; the outage was logged once */
    }
}

/* Lost while in use. The backfill waits it out and goes on from its
 * checkpoint; a cutover ends where it began. */
static void connection_lost_ev(struct migration_runner *r, const char *why, const char *sqlstate)
{
    bf_runner_halt(&r->bfr);
    if (r->phase != MIG_PH_BACKFILLING || r->stop_backfill) {
        snprintf(r->error, sizeof r->error, "lost the database connection: %.900s", why);
        drop_connection(r);
        if (r->stop_backfill) {
            backfill_stopped(r);
        } else if (r->phase == MIG_PH_COMPLETING) {
            r->db_unavailable = 1;
            move_after(r, MIG_EV_CUTOVER_ABANDONED);
        }
        return;
    }
    char reason[sizeof r->error - 32];
    outage_reason(r, reason, sizeof reason, why, sqlstate);
    snprintf(r->error, sizeof r->error, "waiting for the database: %s", reason);
    if (r->conn.reconnects == 0) /* once per outage, not per retry */
        log_warn("migration %s: backfill %s; retrying with backoff, continuing from the checkpoint",
                 r->name, r->error);
    drop_connection(r);
    schedule_backoff(r, load_state);
}

/* The expand or the validations ended well; a rollback asked for
 * meanwhile (it ended before the stop reached it) still runs. */
static void step_done(struct migration_runner *r)
{
    if (r->rollback_asked) {
        start_rollback(r);
        return;
    }
    if (r->phase == MIG_PH_EXPANDING)
        log_info("migration %s: expanded; backfilling on the proxy's event loop", r->name);
    else
        r->error[0] = '\0';
    enum mig_phase to = move_after(r, MIG_EV_STEP_DONE);
    if (to == MIG_PH_BACKFILLING)
        load_state(r);
    else if (to == MIG_PH_ACTIVE)
        log_info("migration %s is active: both shapes are live; complete it once the old release is gone", r->name);
}

static void lock_taken(struct migration_runner *r)
{
    int took_over = r->following;
    r->following = 0;
    r->follow_since_ms = 0;
    r->takeover_at_once = 0;
    if (r->phase == MIG_PH_EXPANDING) { /* the engine that expanded is gone (kill -9 while it waited on a lock) */
        log_info("migration %s: no engine is expanding it any more; this proxy redoes the expand", r->name);
        release_lock_then(r, redo_expand);
        return;
    }
    if (took_over)
        log_info("migration %s: no engine is backfilling; this proxy continues from the checkpoint", r->name);
    backfill_start_batches(r);
}

/* Another engine does the step: this proxy follows it, from the table
 * (and takes the work back should that one die). */
static void lock_lost(struct migration_runner *r)
{
    r->following = 1;
    if (r->phase == MIG_PH_FINISHING) {
        r->follow_since_ms = 0;
        r->takeover_at_once = 0;
        move_after(r, MIG_EV_LOCK_LOST);
    } else {
        r->table_status[0] = '\0';
    }
    load_state(r);
}

static void spawn_finish(struct migration_runner *r)
{
    enter_phase(r, MIG_PH_FINISHING);
    backfill_finish_step(r);
}

static void handle_start(struct migration_runner *r, const struct runner_request *q);

static void start_cleared(struct migration_runner *r)
{
    struct runner_request q = r->start.q;
    q.answer = r->start.w.fn;
    q.ctx = r->start.w.ctx;
    r->start.w.fn = NULL;
    r->start.w.ctx = NULL;
    r->start.q.body = NULL;
    handle_start(r, &q);
    free((char *)q.body);
}

static void cutover_committed(struct migration_runner *r)
{
    if (mig_phase_after(r->phase, MIG_EV_CUTOVER_COMMITTED, r->cut_kind, r->cut_from) == MIG_PH_ROLLING_BACK) {
        start_rollback(r); /* a revert: its request is answered when the rollback has ended */
        return;
    }
    if (move_after(r, MIG_EV_CUTOVER_COMMITTED) != MIG_PH_SWITCHED)
        return;
    struct timeval tv = {r->cut_opt.revert_window_s, 0};
    if (evtimer_add(r->window_timer, &tv) != 0)
        log_warn("migration %s: no timer for the revert window's end; `pgtandem migrate finalize` ends it", r->name);
}

/* A fleet member's engine connection unused this long with no step to run
 * is closed: a sidecar fleet of N then holds N backends, not 2N. */
#define IDLE_CLOSE_MS 5000.0

/* Nothing for the engine connection to do here until the fleet's news,
 * a request or a step asks: a member following a migration another proxy
 * runs, or one with none in progress. The proxy that runs the migration
 * keeps it (and its reserved slot) while the migration is in progress. */
static int idle_member(const struct migration_runner *r)
{
    return r->fleet && pgasync_ready(&r->db) && !record_working_locally(r) && !r->throttle_dirty && !r->post.left &&
           (!mig_phase_in_progress(r->phase) || r->following) &&
           clock_now_ms() - r->db.sent_ms >= IDLE_CLOSE_MS;
}

static void on_event(struct migration_runner *r, enum runner_event ev, const struct runner_news *n)
{
    switch (ev) {
    case RUNNER_EV_STEP_DONE: step_done(r); return;
    case RUNNER_EV_STEP_FAILED: fail(r, "%s", n->why ? n->why : "the step failed"); return;
    case RUNNER_EV_LOCK_TAKEN: lock_taken(r); return;
    case RUNNER_EV_LOCK_LOST: lock_lost(r); return;
    case RUNNER_EV_CONNECT_FAILED: connect_failed(r); return;
    case RUNNER_EV_CONNECTION_LOST: connection_lost_ev(r, n->why ? n->why : "", n->sqlstate); return;
    case RUNNER_EV_RECORD:
        move_to(r, n->phase, MIG_BY_RECORD);
        if (n->phase == MIG_PH_COMPLETED)
            post_left_by_record(r, n->post_left);
        return;
    case RUNNER_EV_RELOAD: load_state(r); return;
    case RUNNER_EV_BACKFILL_DONE: spawn_finish(r); return; /* under the lock the batches held */
    case RUNNER_EV_BACKFILL_STOPPED: backfill_stopped(r); return;
    case RUNNER_EV_START_CLEARED: start_cleared(r); return;
    case RUNNER_EV_CUTOVER_COMMITTED: cutover_committed(r); return;
    case RUNNER_EV_CUTOVER_ABANDONED: move_after(r, MIG_EV_CUTOVER_ABANDONED); return;
    case RUNNER_EV_HEALTH_TICK:
        /* a load of the state an outage cut short is made again: until it
         * is, the sessions waiting for the fleet's look wait (their bound
         * refuses them with 57P03), not served a shape whose route is not
         * in place */
        if (r->state_loading && !r->state_by_fleet &&
            ((pgasync_ready(&r->db) && !r->db.busy) || runner_reads_by_fleet(r)))
            load_state(r);
        if (idle_member(r))
            close_while_idle(r);
        post_run_if_due(r);
        return;
    }
}

/* ---- requests ---- */

static void start_beside(struct migration_runner *r, const struct runner_request *q, struct waiter *w);

static void handle_start(struct migration_runner *r, const struct runner_request *q)
{
    struct waiter w = {q->answer, q->ctx};
    if (!admitted(r, MIG_REQ_START, &w))
        return;
    if (mig_start_beside(r->phase)) { /* one started while the slots were counted */
        start_beside(r, q, &w);
        return;
    }
    runner_reset_migration(r);
    record_own_start(r);
    char *name = start_parse(r, q, &w);
    if (!name)
        return;
    r->following = 0;
    r->follow_since_ms = 0;
    runner_set_name(r, name);
    free(name);
    /* The worker's engine takes the engine lock: this proxy must not hold it. */
    if (r->holds_lock)
        drop_connection(r);
    r->cut_opt = q->cutover; /* its drain_timeout_ms bounds each drain before expand */
    enter_phase(r, MIG_PH_EXPANDING); /* routes every session to the old shape */
    runner_answer(&w, 202, json_pack("{s:s,s:s}", "name", r->name, "phase", mig_phase_word(r->phase)));
    start_route_then_expand(r);
}

/* Before anything changes, the connections the migration will need must
 * be there to have: a start that cannot get them is refused with nothing
 * done, instead of failing halfway through the expand. */
/* A start while a migration is in flight here runs beside it, on an
 * engine of its own (runner_beside.c); the runner goes on with its own. */
static void start_beside(struct migration_runner *r, const struct runner_request *q, struct waiter *w)
{
    char name[128] = "", err[1024] = "";
    int status = beside_start(r, q->body, q->body_len, name, sizeof name, err, sizeof err);
    if (status != 202) {
        runner_answer(w, status, runner_error_json(err));
        return;
    }
    /* this engine's backfill holds the engine lock until it ends (a --db
     * engine lets it go for its backfill): the start waits for it */
    char waits[300] = "";
    if (r->holds_lock && r->phase == MIG_PH_BACKFILLING)
        snprintf(waits, sizeof waits, "the backfill of %s, which holds the engine lock on this proxy until it ends",
                 r->name ? r->name : "the migration in flight");
    if (waits[0])
        log_info("migration %s waits for %s", name, waits);
    runner_answer(w, 202, json_pack("{s:s,s:s,s:s,s:s?}", "name", name, "phase", mig_phase_word(MIG_PH_EXPANDING),
                                    "beside", r->name ? r->name : "", "waits_for", waits[0] ? waits : NULL));
}

static void check_slots_then_start(struct migration_runner *r, const struct runner_request *q)
{
    struct waiter w = {q->answer, q->ctx};
    if (!admitted(r, MIG_REQ_START, &w))
        return;
    if (mig_start_beside(r->phase)) {
        start_beside(r, q, &w);
        return;
    }
    if (r->db.busy) {
        handle_start(r, q); /* goes ahead without the check while the connection is busy */
        return;
    }
    start_check_slots(r, q, &w);
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
        runner_answer(&w, 409, runner_error_json(msg));
        return;
    }
    r->cut_kind = q->cutover.revert_window_s > 0 ? MIG_CUT_SWITCH : MIG_CUT_CONTRACT;
    r->cut_from = MIG_PH_ACTIVE;
    r->cut_opt = q->cutover;
    r->have_cut_rep = 0;
    r->db_unavailable = 0;
    r->error[0] = '\0';
    enter_phase(r, MIG_PH_COMPLETING);
    r->complete_w = w;
    complete_run(r);
}

/* finalize (the old shape goes: the contract) and revert (every session
 * back to the old shape, then the rollback) start from switched, under
 * the same hold as the cutover; the state row is read again first. */
static void begin_from_switched(struct migration_runner *r, enum mig_cut kind, const struct cutover_options *o,
                                const struct waiter *w)
{
    evtimer_del(r->window_timer);
    r->cut_kind = kind;
    r->cut_from = MIG_PH_SWITCHED;
    int window = r->cut_opt.revert_window_s;
    if (o)
        r->cut_opt = *o;
    r->cut_opt.revert_window_s = window;
    r->have_cut_rep = 0;
    r->db_unavailable = 0;
    r->error[0] = '\0';
    enter_phase(r, MIG_PH_COMPLETING);
    if (w)
        r->complete_w = *w;
    log_info("migration %s: %s", r->name, kind == MIG_CUT_REVERT ? "reverting to the old shape" : "finalizing: the old"
             " shape goes");
    complete_from_switched(r);
}

/* The revert window ran out: finalize. */
static void window_ended(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct migration_runner *r = arg;
    if (r->phase == MIG_PH_SWITCHED)
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
    if (r->phase == MIG_PH_EXPANDING)
        start_cancel_before_expand(r);
    if (r->phase == MIG_PH_BACKFILLING && engine_worker_running(&r->worker)) {
        /* a failed batch is being diagnosed: the rollback matters more */
        r->stop_backfill = 1;
        engine_worker_stop(&r->worker);
        return;
    }
    if (r->phase == MIG_PH_BACKFILLING && (r->db.busy || bf_runner_busy(&r->bfr))) {
        r->stop_backfill = 1; /* the batches in flight end first, then the rollback runs */
        return;
    }
    cancel_timer(r);
    bf_runner_halt(&r->bfr);
    release_lock_then(r, start_rollback);
}

static void handle_status(struct migration_runner *r, const struct runner_request *q)
{
    struct waiter w = {q->answer, q->ctx};
    if (!admitted(r, MIG_REQ_STATUS, &w))
        return;
    struct mig_facts f;
    runner_facts(r, &f);
    status_answer(r, &w, &f);
}

/* A request that names a migration (complete NAME ...) this engine does
 * not run, or one it switched to a moment ago: answered here, 1; else 0. */
static int answered_for_another(struct migration_runner *r, const struct runner_request *q, struct waiter *w)
{
    int same = r->name && !strcmp(q->name, r->name);
    if (!q->name[0] || (same && !r->state_loading))
        return 0;
    char msg[700];
    /* a moment's gap, not a refusal: the CLI asks again. Switched to it a
     * moment ago, its state not loaded yet, the phase is still the last
     * one's (found by the seeds' history through a proxy: complete g7
     * answered "g7 is already completed", e5's) */
    int soon = same || (r->name && !mig_word_in_progress(r->table_status) && relay_route_index(r->relay, q->name) >= 0);
    if (soon && same)
        snprintf(msg, sizeof msg, "this proxy's engine is reading the state of migration %s, which it follows from "
                 "now on: try again", q->name);
    else if (soon)
        snprintf(msg, sizeof msg, "this proxy's engine ran migration %s, which is %s; it follows %s, the oldest in "
                 "flight now, from the fleet's next look at the migrations table (within a heartbeat): try again",
                 r->name, r->table_status[0] ? r->table_status : "ended", q->name);
    else if (r->name && relay_route_index(r->relay, q->name) > relay_route_index(r->relay, r->name))
        snprintf(msg, sizeof msg, "migration %s is in flight above %s, the oldest in flight, which this proxy's "
                 "engine runs: through the proxies migrations complete oldest first; complete %s first, or roll %s "
                 "back with --db", q->name, r->name, r->name, q->name);
    else
        snprintf(msg, sizeof msg, "this proxy's engine runs migration %s, not %s", r->name ? r->name : "(none)",
                 q->name);
    json_t *body = runner_error_json(msg);
    if (soon)
        json_object_set_new(body, "retry_after_ms", json_integer(MIG_RETRY_FOLLOW_MS));
    runner_answer(w, 409, body);
    return 1;
}

void runner_request(struct migration_runner *r, const struct runner_request *q)
{
    assert(r && q && q->answer); /* every request is answered: it needs somewhere to go */
    struct waiter w = {q->answer, q->ctx};
    if (!r->engine_db) {
        runner_answer(&w, 503, runner_error_json("no engine database: start the proxy with --engine-db URI "
                                                 "(or PGTANDEM_DB / DATABASE_URL)"));
        return;
    }
    if (answered_for_another(r, q, &w))
        return;
    switch (q->op) {
    case RUNNER_START: check_slots_then_start(r, q); return;
    case RUNNER_STATUS: handle_status(r, q); return;
    case RUNNER_COMPLETE: handle_complete(r, q); return;
    case RUNNER_ROLLBACK: handle_rollback(r, q); return;
    case RUNNER_FINALIZE:
    case RUNNER_REVERT: handle_finalize_or_revert(r, q); return;
    case RUNNER_THROTTLE: throttle_answer(r, q); return;
    }
    runner_answer(&w, 400, runner_error_json("unknown request"));
}

void runner_forget(struct migration_runner *r, void *ctx)
{
    struct waiter *ws[] = {&r->complete_w, &r->rollback_w, &r->start.w};
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
        if (ws[i]->ctx == ctx)
            ws[i]->fn = NULL, ws[i]->ctx = NULL;
}

/* ---- the runner's life ---- */

struct migration_runner *runner_new(struct event_base *base, struct relay *relay, const char *engine_db,
                                    struct fleet *fleet)
{
    struct migration_runner *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->base = base;
    r->relay = relay;
    r->fleet = fleet;
    r->report = on_event;
    r->engine_db = engine_db ? strdup(engine_db) : NULL;
    int bf_ok = runner_backfill_init(r) == 0;
    int conn_ok = runner_conn_init(r) == 0;
    int worker_ok = engine_worker_init(&r->worker, base) == 0;
    settings_throttle_defaults(&r->thr);
    runner_reset_metrics(r);
    r->window_timer = evtimer_new(base, window_ended, r);
    if (!worker_ok || !bf_ok || !conn_ok || !r->window_timer || (engine_db && !r->engine_db)) {
        runner_free(r);
        return NULL;
    }
    if (r->engine_db) {
        record_find_latest(r);
        runner_conn_watch_health(r);
    }
    record_follow_fleet(r);
    return r;
}

void runner_free(struct migration_runner *r)
{
    if (!r)
        return;
    if (r->fleet)
        fleet_observe(r->fleet, NULL, NULL, NULL);
    beside_stop_all(r);
    engine_worker_free(&r->worker);
    cutover_abort(&r->cut);
    if (r->cut.retry_timer)
        event_free(r->cut.retry_timer);
    runner_reset_migration(r);
    runner_backfill_free(r);
    runner_conn_free(r);
    runner_start_free(r);
    runner_blockers_free(r);
    if (r->window_timer)
        event_free(r->window_timer);
    json_decref(r->in_flight);
    free(r->engine_db);
    free(r->name);
    free(r);
}

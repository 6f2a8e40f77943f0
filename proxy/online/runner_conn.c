/* The runner's engine connection: opening it (and saying why it cannot
 * be), the one-engine advisory lock taken and let go, the state row read,
 * the runner's one timer, the connection slot reserved for the worker's
 * next step, and the health check that reopens a connection lost while
 * idle. What each outcome means for the migration is the runner's: this
 * file reports it (runner_internal.h) and never decides a phase. */
#include "runner_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "engine.h"
#include "fleet.h"
#include "log.h"
#include "migration_state.h"
#include "retry.h"

#define HEALTH_CHECK_MS 3000
#define LOCK_TRIES 50 /* an engine killed a moment ago (kill -9): its backend lets go when it notices */

/* ---- the timer ---- */

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct migration_runner *r = arg;
    runner_step_fn step = r->conn.timer_step;
    r->conn.timer_step = NULL;
    if (step)
        step(r);
}

void schedule(struct migration_runner *r, long delay_ms, runner_step_fn step)
{
    struct timeval tv = {delay_ms / 1000, (delay_ms % 1000) * 1000};
    r->conn.timer_step = step;
    if (evtimer_add(r->conn.timer, &tv) != 0) {
        r->conn.timer_step = NULL;
        runner_report(r, RUNNER_EV_STEP_FAILED, "cannot arm the engine's timer (libevent)", NULL);
    }
}

/* 1 s, 2 s, 4 s ... up to RECONNECT_MAX_DELAY_MS, counted per outage. */
void schedule_backoff(struct migration_runner *r, runner_step_fn step)
{
    schedule(r, r->conn.reconnects < 5 ? 1000L << r->conn.reconnects++ : RECONNECT_MAX_DELAY_MS, step);
}

void cancel_timer(struct migration_runner *r)
{
    evtimer_del(r->conn.timer);
    r->conn.timer_step = NULL;
}

int timer_armed(const struct migration_runner *r)
{
    return r->conn.timer_step != NULL;
}

/* ---- opening it ---- */

/* A lost connection (a restart, a suspended compute) or a server out of
 * disk during the backfill is waited out, not fatal: the checkpoint commits
 * with each batch, so it continues where it stopped. */
int connection_lost(const char *sqlstate)
{
    return pg_error_transient(sqlstate);
}

/* "the database's disk is full (53100): could not extend file ...". A
 * disk-full server often crashes and recovers next: its "not yet accepting
 * connections" is a consequence, and the disk stays the reported cause. */
void outage_reason(struct migration_runner *r, char *out, size_t n, const char *why, const char *sqlstate)
{
    const char *cause = pg_error_cause(sqlstate);
    if (r->conn.reconnects > 0 && strstr(r->error, "(53") && sqlstate && strncmp(sqlstate, "53", 2) != 0) {
        const char *p = strstr(r->error, ": ");
        snprintf(out, n, "%.600s; now: %.300s", p ? p + 2 : r->error, why);
        return;
    }
    if (cause)
        snprintf(out, n, "%s (%s): %.700s", cause, sqlstate, why);
    else
        snprintf(out, n, "%.900s", why);
}

static void on_session_set(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    (void)sqlstate;
    struct migration_runner *r = ctx;
    runner_step_fn next = r->conn.after_connect;
    r->conn.after_connect = NULL;
    if (error)
        log_warn("engine connection settings: %s", error); /* Postgres < 14: no connection check */
    if (r->conn.reconnects > 0)
        log_info("migration %s: the database is back after %d retries", r->name ? r->name : "-",
                 r->conn.reconnects);
    r->conn.reconnects = 0;
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
        r->conn.after_connect = NULL;
        char reason[sizeof r->error - 32];
        outage_reason(r, reason, sizeof reason, why, "08006");
        snprintf(r->error, sizeof r->error, "cannot connect to the database: %s", reason);
        if (r->conn.reconnects == 0) /* once per outage, not per retry */
            log_warn("migration %s: %s", r->name ? r->name : "-", r->error);
        runner_report(r, RUNNER_EV_CONNECT_FAILED, r->error, "08006");
    }
}

/* Each step waits once: a step asked for twice (a load of the state the
 * health tick and a request both want) runs once. */
static void wait_until_free(struct migration_runner *r, runner_step_fn next)
{
    for (int i = 0; i < r->conn.nwaiting; i++)
        if (r->conn.waiting[i] == next)
            return;
    if (r->conn.nwaiting == RUNNER_CONN_WAITERS) { /* cannot happen: fewer distinct steps */
        log_error("engine: too many steps wait for the engine connection");
        next(r);
        return;
    }
    r->conn.waiting[r->conn.nwaiting++] = next;
}

/* From inside pgasync (a callback's end, a close): the steps run from the
 * loop, not from under the statement that just ended. */
static void on_db_idle(void *ctx)
{
    struct migration_runner *r = ctx;
    if (r->conn.nwaiting > 0 && r->conn.idle_ev)
        event_active(r->conn.idle_ev, EV_TIMEOUT, 0);
}

/* The first in line goes; it may take the connection, and the others
 * wait for it in turn. */
static void run_waiting(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct migration_runner *r = arg;
    while (r->conn.nwaiting > 0 && !r->db.busy) {
        runner_step_fn next = r->conn.waiting[0];
        memmove(r->conn.waiting, r->conn.waiting + 1, (size_t)--r->conn.nwaiting * sizeof r->conn.waiting[0]);
        with_connection(r, next);
    }
}

int conn_waiting(const struct migration_runner *r)
{
    return r->conn.nwaiting > 0;
}

void with_connection(struct migration_runner *r, runner_step_fn next)
{
    if (r->db.busy) {
        wait_until_free(r, next);
        return;
    }
    if (pgasync_ready(&r->db)) {
        next(r);
        return;
    }
    drop_connection(r);
    r->conn.closed_while_idle = 0;
    r->conn.after_connect = next;
    if (pgasync_connect(&r->db, r->engine_db, on_connected, r) != 0)
        on_connected(r, NULL, r->db.error, NULL);
}

/* Ends the session, and with it the advisory lock it may hold. */
void drop_connection(struct migration_runner *r)
{
    pgasync_close(&r->db);
    r->holds_lock = 0;
}

/* ---- the engine lock ---- */

double runner_lease_ms(const struct migration_runner *r)
{
    return r->fleet ? fleet_lease_ms(r->fleet) : 3000;
}

static void on_unlocked(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    (void)error;
    (void)sqlstate;
    struct migration_runner *r = ctx;
    runner_step_fn next = r->conn.after_unlock;
    r->conn.after_unlock = NULL;
    r->holds_lock = 0;
    next(r);
}

void release_lock_then(struct migration_runner *r, runner_step_fn next)
{
    if (!pgasync_ready(&r->db) || !r->holds_lock) {
        next(r);
        return;
    }
    r->conn.after_unlock = next;
    if (pgasync_send(&r->db, MIG_STATE_UNLOCK_SQL, 0, NULL, on_unlocked, r) != 0) {
        r->conn.after_unlock = NULL;
        drop_connection(r);
        next(r);
    }
}

/* A worker step of the backfill (its validations, a failed batch's
 * diagnosis) runs under the lock the batches held, lent to it: let go of
 * and taken again, it would be free in between, and a follower polling
 * then would take the migration over. A connection that cannot keep it
 * (closed, or busy) is closed, and the worker takes the lock itself. */
void hand_lock_to_step(struct migration_runner *r)
{
    if (r->holds_lock && pgasync_ready(&r->db) && !r->db.busy)
        engine_worker_lend_lock(&r->worker);
    else if (r->holds_lock)
        drop_connection(r);
}

/* ---- confirming a takeover ---- */

static void after_refused_takeover(struct migration_runner *r)
{
    runner_report(r, RUNNER_EV_RELOAD, NULL, NULL);
}

/* The read that decided to try the lock may predate the step's own
 * hand-over: the expand's worker commits `backfilling` and lets go of the
 * lock, and this proxy's backfill takes it a moment later. A read made
 * under the lock is the truth: the engine that is alive changes the status
 * only while it holds the lock, so a status other than the one seen, or
 * one changed within two leases, is that engine's and not orphaned. */
static void on_takeover_check(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    struct migration_runner *r = ctx;
    if (error && connection_lost(sqlstate)) {
        runner_report(r, RUNNER_EV_CONNECTION_LOST, error, sqlstate);
        return;
    }
    int expected = r->phase == MIG_PH_EXPANDING ? MIG_ST_EXPANDING : MIG_ST_BACKFILLING;
    int ok = !error && res && PQntuples(res) == 1 && mig_status_of_word(PQgetvalue(res, 0, 0)) == expected;
    long long age = ok && !PQgetisnull(res, 0, 1) ? atoll(PQgetvalue(res, 0, 1)) : 0;
    if (ok && (r->takeover_at_once || (double)age >= 2 * runner_lease_ms(r))) {
        runner_report(r, RUNNER_EV_LOCK_TAKEN, NULL, NULL);
        return;
    }
    log_debug("migration %s: the engine lock was free for a moment only (status %s, changed %lld ms ago);"
              " following", r->name, res && PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "unknown", age);
    release_lock_then(r, after_refused_takeover);
}

static void confirm_takeover(struct migration_runner *r)
{
    const char *values[1] = {r->name};
    if (pgasync_send(&r->db, MIG_STATE_AGE_SQL, 1, values, on_takeover_check, r) != 0)
        runner_report(r, RUNNER_EV_CONNECTION_LOST, r->db.error, r->db.sqlstate);
}

static void on_lock(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    struct migration_runner *r = ctx;
    if (error && connection_lost(sqlstate)) {
        runner_report(r, RUNNER_EV_CONNECTION_LOST, error, sqlstate);
        return;
    }
    if (error || !res || PQntuples(res) != 1 || PQgetvalue(res, 0, 0)[0] != 't') {
        if (!error && r->following) { /* another engine backfills; we follow it */
            r->conn.lock_tries = 0;
            r->error[0] = '\0';
            return;
        }
        if (!error && ++r->conn.lock_tries < LOCK_TRIES) {
            schedule(r, 100, take_engine_lock);
            return;
        }
        char msg[sizeof r->error];
        snprintf(msg, sizeof msg, ENGINE_LOCK_HELD_MSG " (advisory lock " ENGINE_LOCK_KEY " is held): %.900s",
                 error ? error : "stop it or wait for it to finish");
        runner_report(r, RUNNER_EV_STEP_FAILED, msg, NULL);
        return;
    }
    r->conn.lock_tries = 0;
    r->holds_lock = 1;
    if (r->following)
        confirm_takeover(r);
    else
        runner_report(r, RUNNER_EV_LOCK_TAKEN, NULL, NULL);
}

static void send_try_lock(struct migration_runner *r)
{
    char key[16];
    mig_lock_key(r->name, key, sizeof key);
    const char *values[1] = {r->name ? key : NULL};
    if (pgasync_send(&r->db, MIG_STATE_TRY_LOCK_SQL, 1, values, on_lock, r) != 0)
        runner_report(r, RUNNER_EV_CONNECTION_LOST, r->db.error, r->db.sqlstate);
}

int runner_reads_by_fleet(const struct migration_runner *r)
{
    return r->fleet && r->following && r->name && !pgasync_ready(&r->db) && !r->db.busy;
}

/* A follower asks the fleet's connection first whether an engine holds
 * the lock: every follower of a fleet tries it at each piece of news once
 * a step is two leases old, and opening its engine connection for each try
 * held 2N backends. When it is free, they try in the order of their slots,
 * TAKEOVER_STAGGER_MS apart, each looking again first: the first takes it
 * and the others see it held. */
#define TAKEOVER_STAGGER_MS 250

static void on_lock_look(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)sqlstate;
    struct migration_runner *r = ctx;
    r->conn.lock_look = 0;
    if (error || !res || PQntuples(res) != 1)
        return; /* the next piece of news asks again */
    if (PQgetvalue(res, 0, 0)[0] == 't') { /* an engine runs it: follow */
        r->conn.lock_tries = 0;
        r->conn.lock_free_seen = 0;
        return;
    }
    if (!r->following || !r->name)
        return;
    if (!r->conn.lock_free_seen && fleet_slot(r->fleet) > 1) {
        r->conn.lock_free_seen = 1;
        if (!timer_armed(r))
            schedule(r, (long)(fleet_slot(r->fleet) - 1) * TAKEOVER_STAGGER_MS, take_engine_lock);
        return;
    }
    r->conn.lock_free_seen = 0;
    with_connection(r, send_try_lock);
}

void take_engine_lock(struct migration_runner *r)
{
    if (r->conn.lock_look)
        return;
    if (runner_reads_by_fleet(r) && fleet_read(r->fleet, MIG_STATE_ENGINE_LOCK_HELD_SQL, 0, NULL, on_lock_look, r) >= 0) {
        r->conn.lock_look = 1;
        return;
    }
    r->conn.lock_free_seen = 0;
    with_connection(r, send_try_lock);
}

/* ---- the reserved connection slot ---- */

static void on_slot_reserved(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    (void)sqlstate;
    struct migration_runner *r = ctx;
    if (!error) {
        if (r->conn.reserve_logged)
            log_info("engine: a connection slot is reserved for the migration's next step again");
        r->conn.reserve_logged = 0;
        return;
    }
    pgasync_close(&r->conn.reserve);
    if (!r->conn.reserve_logged)
        log_warn("engine: cannot reserve a connection slot for the migration's next step (%s); "
                 "it will need a free slot when it starts", error);
    r->conn.reserve_logged = 1;
}

/* Held while a migration this proxy runs is in progress and no engine
 * step runs (followers run no steps). */
void keep_slot_reserved(struct migration_runner *r)
{
    int want = r->engine_db && mig_phase_in_progress(r->phase) && !r->following && !engine_worker_running(&r->worker);
    if (!want) {
        if (!engine_worker_running(&r->worker))
            pgasync_close(&r->conn.reserve);
        return;
    }
    if (r->conn.reserve.conn)
        return; /* open, or opening */
    if (pgasync_connect(&r->conn.reserve, r->engine_db, on_slot_reserved, r) != 0)
        on_slot_reserved(r, NULL, r->conn.reserve.error, NULL);
}

/* The worker connects right after this; Postgres frees the slot when the
 * backend has exited, which the worker's connect waits for (engine_open
 * retries "too many clients" briefly). */
void give_slot_to_step(struct migration_runner *r)
{
    pgasync_close(&r->conn.reserve);
}

/* ---- closed while idle ---- */

void close_while_idle(struct migration_runner *r)
{
    drop_connection(r);
    r->conn.closed_while_idle = 1;
    log_debug("engine: connection closed while idle (the fleet's connection hears the news)");
}

/* ---- the health check ---- */

static void reconnected(struct migration_runner *r)
{
    (void)r;
}

/* A connection lost while idle (a restart, a suspended compute) is opened
 * again within seconds, so /status says the truth and the next step does
 * not start with a failure. */
static void health_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct migration_runner *r = arg;
    if (!r->conn.closed_while_idle && r->phase != MIG_PH_COMPLETING && !pgasync_ready(&r->db) && !r->db.busy &&
        !r->conn.after_connect &&
        !evtimer_pending(r->conn.timer, NULL) && !bf_runner_active(&r->bfr))
        with_connection(r, reconnected);
    keep_slot_reserved(r);
    runner_report(r, RUNNER_EV_HEALTH_TICK, NULL, NULL);
}

int runner_conn_init(struct migration_runner *r)
{
    pgasync_init(&r->db, r->base);
    /* no session-wide statement or lock timeout: backfill and cutover set their own per step */
    pgasync_configure(&r->db, "engine", ENGINE_WATCHDOG_MS, NULL);
    pgasync_init(&r->conn.reserve, r->base);
    pgasync_configure(&r->conn.reserve, "engine reserve", ENGINE_WATCHDOG_MS, NULL);
    r->conn.timer = evtimer_new(r->base, timer_cb, r);
    r->conn.idle_ev = evtimer_new(r->base, run_waiting, r);
    pgasync_on_idle(&r->db, on_db_idle, r);
    return r->conn.timer && r->conn.idle_ev ? 0 : -1;
}

void runner_conn_watch_health(struct migration_runner *r)
{
    struct timeval every = {HEALTH_CHECK_MS / 1000, (HEALTH_CHECK_MS % 1000) * 1000};
    r->conn.health_timer = event_new(r->base, -1, EV_PERSIST, health_cb, r);
    if (!r->conn.health_timer || event_add(r->conn.health_timer, &every) != 0)
        log_warn("engine: no health check timer; a lost engine connection is reopened by its next use");
}

void runner_conn_free(struct migration_runner *r)
{
    r->conn.nwaiting = 0;
    pgasync_close(&r->db);
    if (r->conn.idle_ev)
        event_free(r->conn.idle_ev);
    pgasync_close(&r->conn.reserve);
    if (r->conn.health_timer)
        event_free(r->conn.health_timer);
    if (r->conn.timer)
        event_free(r->conn.timer);
}

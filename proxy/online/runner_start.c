/* start: what happens between POST /migrations and the backfill. The
 * runner admits the request and moves to expanding; this file checks the
 * database has a connection slot for the worker first (a start that
 * cannot get one is refused with nothing done), reads the request's
 * migration, holds every session at a transaction boundary so the next
 * transaction of each sees the old shape, and runs the expand on the
 * worker. It also redoes an expand whose engine died (kill -9 while it
 * waited on a lock). How each ends goes up to the runner as an event. */
#include "runner_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "log.h"
#include "relay_control.h"
#include "retry.h"
#include "sql_load.h"

#define ROUTE_ATTEMPTS 5 /* drains tried before a start gives up */

/* ---- the connection slots, before anything changes ---- */

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

void start_check_refused(struct migration_runner *r, int status, const char *why)
{
    free((char *)r->start.q.body);
    r->start.q.body = NULL;
    runner_answer(&r->start.w, status, runner_error_json(why));
}

static void on_free_slots(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)sqlstate;
    struct migration_runner *r = ctx;
    if (!r->start.w.fn) { /* the requester went away */
        start_check_refused(r, 500, "");
        return;
    }
    if (error || !res || PQntuples(res) != 1) {
        char why[1200];
        snprintf(why, sizeof why, "cannot count the database's free connection slots: %s",
                 error ? error : "no answer");
        start_check_refused(r, 503, why);
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
        start_check_refused(r, 503, why);
        return;
    }
    runner_report(r, RUNNER_EV_START_CLEARED, NULL, NULL);
}

static void send_free_slots(struct migration_runner *r)
{
    if (pgasync_send(&r->db, FREE_SLOTS_SQL, 0, NULL, on_free_slots, r) != 0)
        start_check_refused(r, 503, r->db.error);
}

/* Before anything changes, the connections the migration will need must
 * be there to have: the request waits (start.w, start.q) for the count. */
void start_check_slots(struct migration_runner *r, const struct runner_request *q, const struct waiter *w)
{
    char *body = malloc(q->body_len + 1);
    if (!body) {
        struct waiter once = *w;
        runner_answer(&once, 500, runner_error_json("out of memory"));
        return;
    }
    memcpy(body, q->body, q->body_len);
    body[q->body_len] = '\0';
    r->start.q = *q;
    r->start.q.body = body;
    r->start.w = *w;
    with_connection(r, send_free_slots);
}

/* ---- the request's migration ---- */

/* A migration (JSON), a chain of them, or SQL: read into r->mig where it
 * can be read here (else loaded as the expand stored it), its body kept
 * for the expand. Returns the migration's name (owned by the caller), or
 * NULL once w is answered. */
char *start_parse(struct migration_runner *r, const struct runner_request *q, struct waiter *w)
{
    char err[1024];
    struct migration *chain = NULL;
    size_t n = 0;
    /* .sql files: checked here, converted with the catalog by the worker */
    int is_chain = sql_load_body_chain(q->body, q->body_len, NULL, &chain, &n, err, sizeof err);
    int is_sql = is_chain ? 0 : sql_load_from_body(q->body, q->body_len, NULL, &r->mig, err, sizeof err);
    if (is_chain < 0 || is_sql < 0 ||
        (!is_chain && !is_sql && mig_parse(q->body, q->body_len, "request body", &r->mig, err, sizeof err))) {
        runner_answer(w, 400, runner_error_json(err));
        return NULL;
    }
    /* a chain's head names the migration; which ones are pending (merged or
     * not) the engine decides, and the stored migration is loaded after expand */
    const struct migration *head = is_chain ? &chain[n - 1] : &r->mig;
    r->have_mig = !is_chain && !is_sql; /* else loaded as expand stored it */
    settings_throttle_from_migration(&r->thr, &head->backfill);
    char *name = strdup(head->name);
    mig_free_list(chain, n);
    if (is_sql)
        mig_free(&r->mig);
    free((char *)r->start.expand_body);
    r->start.expand_body = name ? malloc(q->body_len ? q->body_len : 1) : NULL;
    if (!r->start.expand_body) {
        free(name);
        runner_answer(w, 500, runner_error_json("out of memory"));
        return NULL;
    }
    memcpy((char *)r->start.expand_body, q->body, q->body_len);
    r->start.expand_body_len = q->body_len;
    r->start.route_attempts = 0;
    return name;
}

/* ---- the route, then the expand ---- */

static void after_expand(void *ctx, int code, const char *why)
{
    struct migration_runner *r = ctx;
    r->step_status = code;
    runner_report(r, code != 0 ? RUNNER_EV_STEP_FAILED : RUNNER_EV_STEP_DONE, code != 0 ? why : NULL, NULL);
}

static void run_expand(struct migration_runner *r)
{
    give_slot_to_step(r);
    int rc = engine_worker_run(&r->worker, ENGINE_JOB_EXPAND, r->engine_db, r->start.expand_body,
                               r->start.expand_body_len, after_expand, r);
    free((char *)r->start.expand_body);
    r->start.expand_body = NULL;
    if (rc != 0)
        runner_report(r, RUNNER_EV_STEP_FAILED, r->worker.why, NULL);
}

static void route_then_expand(struct migration_runner *r);

/* Drained: every session is at a transaction boundary, and the next thing
 * each one sends goes to the old shape (session.c: follow_route). Nobody
 * needs holding longer. */
static void on_route_drained(void *ctx, int drained, uint64_t waited_us)
{
    struct migration_runner *r = ctx;
    r->start.route_holding = 0;
    if (drained) {
        struct relay_hold_stats st;
        relay_release(r->relay, &st);
        log_info("migration %s: every session is routed to the old shape (traffic held %.2f ms, %u messages"
                 " waited); expanding", r->name, st.held_ms, st.held_messages);
        run_expand(r);
        return;
    }
    if (++r->start.route_attempts < ROUTE_ATTEMPTS) {
        long delay = retry_delay_ms(RETRY_FIRST_MS, r->start.route_attempts, &r->start.route_seed);
        log_warn("migration %s: sessions still inside transactions after %llu ms; nothing changed yet, traffic"
                 " flows, trying again in %ld ms", r->name, (unsigned long long)(waited_us / 1000), delay);
        schedule(r, delay, route_then_expand);
        return;
    }
    json_t *busy = relay_busy_sessions(r->relay);
    char *who = json_dumps(busy, JSON_COMPACT);
    json_decref(busy);
    char msg[sizeof r->error];
    snprintf(msg, sizeof msg, "the sessions could not be routed to the old shape before expand: %d times some"
             " stayed inside a transaction longer than %d ms (%.500s); nothing was changed", ROUTE_ATTEMPTS,
             r->cut_opt.drain_timeout_ms, who ? who : "?");
    free(who);
    runner_report(r, RUNNER_EV_STEP_FAILED, msg, NULL);
}

/* Before expand changes a table, every session must have left the
 * transaction it was in when the migration started: its next one begins
 * on the old shape. The same brief hold at transaction boundaries as the
 * cutover's, released as soon as everyone is at one. */
static void route_then_expand(struct migration_runner *r)
{
    /* set first: with every session at a boundary already, the drain ends
     * (on_route_drained) inside relay_hold */
    r->start.route_holding = 1;
    if (relay_hold(r->relay, "route", "routing sessions to the old shape before expand", r->cut_opt.drain_timeout_ms,
                   on_route_drained, r) != 0) {
        r->start.route_holding = 0;
        runner_report(r, RUNNER_EV_STEP_FAILED, "cannot hold traffic to route the sessions; nothing was changed",
                      NULL);
    }
}

void start_route_then_expand(struct migration_runner *r)
{
    route_then_expand(r);
}

int start_routing(const struct migration_runner *r)
{
    return r->start.route_holding || r->conn.timer_step == route_then_expand;
}

/* Still routing the sessions before expand: nothing ran yet. */
void start_cancel_before_expand(struct migration_runner *r)
{
    log_warn("migration %s: rollback asked for before its expand began; not expanding", r->name);
    if (r->start.route_holding) {
        relay_forget(r->relay, r);
        relay_release(r->relay, NULL);
        r->start.route_holding = 0;
    }
    free((char *)r->start.expand_body);
    r->start.expand_body = NULL;
}

/* ---- an expand whose engine is gone ---- */

/* The expand is this proxy's unless another engine took the lock first,
 * or the migration ended meanwhile (the resume found none in progress):
 * then the table says what happens, and this proxy follows it. */
static void after_redo_expand(void *ctx, int code, const char *why)
{
    struct migration_runner *r = ctx;
    if (code != 0 && !r->rollback_asked && (code == ENGINE_INVALID || strstr(why, ENGINE_LOCK_HELD_MSG))) {
        log_info("migration %s: the expand is not redone here (%s); following it", r->name, why);
        runner_report(r, RUNNER_EV_LOCK_LOST, why, NULL);
        return;
    }
    after_expand(ctx, code, why);
}

/* The expand an engine left in the table when it died, undone and redone
 * as `migrate resume` does; a rollback asked for meanwhile stops it. */
void redo_expand(struct migration_runner *r)
{
    give_slot_to_step(r);
    if (engine_worker_run(&r->worker, ENGINE_JOB_EXPAND, r->engine_db, NULL, 0, after_redo_expand, r) != 0)
        runner_report(r, RUNNER_EV_STEP_FAILED, r->worker.why, NULL);
}

void runner_start_free(struct migration_runner *r)
{
    free((char *)r->start.q.body);
    r->start.q.body = NULL;
    free((char *)r->start.expand_body);
    r->start.expand_body = NULL;
    if (r->start.route_holding) {
        relay_forget(r->relay, r);
        relay_release(r->relay, NULL);
        r->start.route_holding = 0;
    }
}

/* The path of a complete (and of finalize and revert, which start from
 * switched): from the moment the runner has moved to completing to the
 * COMMIT of the contract and the steps after it. complete_path below is
 * the sequence; each step's asynchronous continuations follow it in this
 * file, in the order they run, and end in the next step (next_step) or
 * leave the path: CUTOVER_ABANDONED (r->error says why) or the state row
 * read as the record, when another process moved the migration. The last
 * step reports CUTOVER_COMMITTED; the runner moves the phase and answers
 * the waiting request. */
#include "runner_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "clock.h"
#include "engine.h"
#include "fleet.h"
#include "log.h"
#include "migration_state.h"
#include "migration_sql.h"
#include "relay_control.h"

static void refuse_while_old_release_left(struct migration_runner *r);
static void checks_then_cutover(struct migration_runner *r);
static void recheck_then_cutover(struct migration_runner *r);
static void begin_cutover(struct migration_runner *r);
static void run_post_steps(struct migration_runner *r);
static void bound_by_cutover(struct migration_runner *r);
static json_t *old_release_left(const struct migration_runner *r, int *count);
static void name_sessions(json_t *left, const PGresult *res, char *out, size_t cap);

enum complete_step { STEP_OLD_RELEASE, STEP_CHECKS, STEP_RECHECK, STEP_CUTOVER, STEP_POST };

static const runner_step_fn complete_path[] = {
    [STEP_OLD_RELEASE] = refuse_while_old_release_left, /* 1. who of the old release is left (unless forced) */
    [STEP_CHECKS] = checks_then_cutover,                /* 2. the checks that scan, on the worker */
    [STEP_RECHECK] = recheck_then_cutover,              /* 3. the state row, read again */
    [STEP_CUTOVER] = begin_cutover,                     /* 4. the hold, the contract, its COMMIT */
    [STEP_POST] = run_post_steps,                       /* 5. the validations after it, traffic flowing */
};

static void run_step(struct migration_runner *r)
{
    complete_path[r->complete_step](r);
}

/* On the engine connection, opened again first if it was closed. */
static void start_at(struct migration_runner *r, enum complete_step step)
{
    r->complete_step = (int)step;
    with_connection(r, run_step);
}

static void next_step(struct migration_runner *r)
{
    r->complete_step++;
    run_step(r);
}

void complete_run(struct migration_runner *r)
{
    bound_by_cutover(r);
    start_at(r, STEP_OLD_RELEASE);
}

void complete_from_switched(struct migration_runner *r)
{
    bound_by_cutover(r);
    start_at(r, STEP_RECHECK);
}

static void abandon(struct migration_runner *r)
{
    runner_report(r, RUNNER_EV_CUTOVER_ABANDONED, r->error, NULL);
}

/* ---- 1. who of the old release is left ---- */

/* What each backend last ran and how long it has been idle, as Postgres
 * keeps it ($1: the backends' PIDs as a JSON array). */
static const char LAST_STATEMENTS_SQL[] =
    "SELECT pid, left(query, 60), state, (extract(epoch FROM clock_timestamp() - state_change) * 1000)::bigint"
    "  FROM pg_stat_activity WHERE pid IN (SELECT jsonb_array_elements_text($1::jsonb)::int)";

static void on_last_statements(void *ctx, PGresult *res, const char *error, const char *sqlstate);

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
        next_step(r);
    else if (pgasync_send(&r->db, LAST_STATEMENTS_SQL, 1, values, on_last_statements, r) != 0)
        on_last_statements(r, NULL, r->db.error, NULL);
    free(text);
}

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
        abandon(r); /* answers the complete: 503 (or 409) with r->error */
        return;
    }
    if (count == 0) { /* the old release left while Postgres was asked */
        next_step(r);
        return;
    }
    snprintf(r->error, sizeof r->error, "%d session%s of the old release (no pgtandem.version, or another one than"
             " %.40s) %s still connected: %.700s; they would see the old shape disappear. Retire the old release first,"
             " or complete with force", count, count == 1 ? "" : "s", r->name, count == 1 ? "is" : "are", who);
    log_warn("migration %s: complete refused: %s", r->name, r->error);
    abandon(r); /* answers the complete: 409 with r->error */
}

/* ---- 2. the checks that scan ---- */

static void after_checks(void *ctx, int code, const char *why);

/* Checks that scan the table run before anyone is held, on the worker,
 * with traffic flowing; then the state row is read again. */
static void checks_then_cutover(struct migration_runner *r)
{
    if (r->plan.nchecks == 0) {
        next_step(r);
        return;
    }
    give_slot_to_step(r);
    if (engine_worker_run(&r->worker, ENGINE_JOB_CHECK, r->engine_db, NULL, 0, after_checks, r) != 0) {
        snprintf(r->error, sizeof r->error, "%.1000s", r->worker.why);
        abandon(r);
    }
}

/* Rows that violate a check leave the migration active, nobody held. */
static void after_checks(void *ctx, int code, const char *why)
{
    struct migration_runner *r = ctx;
    r->step_status = code;
    if (code != 0) {
        snprintf(r->error, sizeof r->error, "%s", why);
        abandon(r);
        return;
    }
    start_at(r, STEP_RECHECK); /* the worker's step may have outlived the connection */
}

/* ---- 3. the state row, read again ---- */

static void on_recheck(void *ctx, PGresult *res, const char *error, const char *sqlstate);

static void recheck_then_cutover(struct migration_runner *r)
{
    const char *values[1] = {r->name};
    if (pgasync_send(&r->db, MIG_STATE_LOAD_SQL, 1, values, on_recheck, r) != 0)
        on_recheck(r, NULL, r->db.error, "08006");
}

/* Another process may have completed or rolled back the migration since
 * this proxy last looked: the state row decides, before anyone is held. */
static void on_recheck(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    struct migration_runner *r = ctx;
    if (error || !res || PQntuples(res) != 1) {
        snprintf(r->error, sizeof r->error, "reading the migration's state: %.900s",
                 error ? error : "the migration is no longer recorded");
        /* unanswered, nobody can tell whether another proxy moved it: 503,
         * try again, as when the old release's sessions cannot be asked */
        if (error && (connection_lost(sqlstate) || !pgasync_ready(&r->db))) {
            r->db_unavailable = 1;
            pgasync_close(&r->db);
        }
        abandon(r);
        return;
    }
    int st = mig_phase_status(r->cut_from, r->cut_from);
    if (st < 0 || strcmp(PQgetvalue(res, 0, 1), mig_status_word((enum mig_status)st)) != 0) {
        record_read(r, res, error, sqlstate);
        return;
    }
    next_step(r);
}

/* ---- 4. the cutover ---- */

static char *contract_sql(void *ctx, const struct cutover_report *rep, int tail);
static void cutover_committed(void *ctx);
static void cutover_done(void *ctx, enum cutover_outcome outcome, const struct cutover_report *rep);

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
        abandon(r);
    }
}

/* The contract's statements, then (tail) the state update. */
static char *contract_sql(void *ctx, const struct cutover_report *rep, int tail)
{
    struct migration_runner *r = ctx;
    PGconn *conn = r->db.conn;
    int notify = r->fleet == NULL; /* a fleet hears it after its hold: cutover_done */
    if (tail)
        return r->cut_kind == MIG_CUT_SWITCH   ? mig_state_status_sql(conn, r->name, MIG_ST_SWITCHED, notify)
               : r->cut_kind == MIG_CUT_REVERT ? mig_state_status_sql(conn, r->name, MIG_ST_ACTIVE, notify)
                                           : mig_state_completed_sql(conn, r->name, r->have_mig ? r->mig.merges : NULL,
                                                                     rep->attempts, rep->lock_wait_ms,
                                                                     r->have_plan ? r->plan.post.n : 0, notify);
    if (r->cut_kind != MIG_CUT_CONTRACT) /* nothing changes but who sees which shape */
        return strdup("SELECT 1");
    struct mig_str s = {0};
    mig_str_add(&s, "");
    for (size_t i = 0; i < r->plan.contract.n; i++)
        mig_str_addf(&s, "%s;\n", r->plan.contract.v[i].sql);
    mig_str_add(&s, "SELECT 1");
    return mig_str_take(&s);
}

/* Committed, traffic still held: the shape each session gets from its next
 * transaction on is pushed before anyone moves. */
static void cutover_committed(void *ctx)
{
    struct migration_runner *r = ctx;
    if (r->cut_kind == MIG_CUT_SWITCH)
        route_for(r, MIG_PH_SWITCHED);
    else if (r->cut_kind == MIG_CUT_REVERT)
        route_for(r, MIG_PH_ROLLING_BACK);
}

static void cutover_done(void *ctx, enum cutover_outcome outcome, const struct cutover_report *rep)
{
    struct migration_runner *r = ctx;
    r->have_cut_rep = 1; /* the same report stays in r->cut.rep */
    if (outcome == CUTOVER_COMMITTED && r->fleet) /* released: now the fleet hears the news */
        fleet_tell_news(r->fleet, r->name,
                        mig_status_word(r->cut_kind == MIG_CUT_SWITCH   ? MIG_ST_SWITCHED
                                        : r->cut_kind == MIG_CUT_REVERT ? MIG_ST_ACTIVE
                                                                        : MIG_ST_COMPLETED));
    if (outcome == CUTOVER_COMMITTED && r->cut_kind == MIG_CUT_SWITCH) {
        r->error[0] = '\0';
        log_info("migration %s: every session sees the new shape; the old one is kept for a revert for %d s"
                 " (`pgtandem migrate revert`), then dropped (`pgtandem migrate finalize` drops it now)",
                 r->name, r->cut_opt.revert_window_s);
        runner_report(r, RUNNER_EV_CUTOVER_COMMITTED, NULL, NULL);
        return;
    }
    if (outcome == CUTOVER_COMMITTED && r->cut_kind == MIG_CUT_REVERT) {
        r->error[0] = '\0';
        log_info("migration %s: every session is back on the old shape; rolling the migration back", r->name);
        runner_report(r, RUNNER_EV_CUTOVER_COMMITTED, NULL, NULL); /* the rollback follows */
        return;
    }
    if (outcome == CUTOVER_COMMITTED) {
        r->error[0] = '\0';
        next_step(r);
        return;
    }
    snprintf(r->error, sizeof r->error, "%s", rep->error);
    /* A lost connection leaves it open whether COMMIT arrived: the state
     * row, which committed with the contract or not at all, decides. */
    if (!pgasync_ready(&r->db)) {
        runner_report(r, RUNNER_EV_RELOAD, NULL, NULL);
        return;
    }
    abandon(r);
}

/* ---- 5. the steps after it ---- */

/* A DROP INDEX CONCURRENTLY waits for every transaction on its table, so
 * a step may outlive its connection or this proxy. The state row counts
 * the steps as they commit (mig_state_post_done_sql); those left run again
 * from there: here with backoff, or on the next engine (a restarted
 * proxy, the next start). Runs that cannot take the engine lock (another
 * proxy runs them) wait their turn the same way. */
#define POST_FIRST_RETRY_MS 2000
#define POST_MAX_RETRY_MS 60000

/* Also the worker's callback of a run again (the engine logs the steps it ran). */
static void post_ended(void *ctx, int code, const char *why)
{
    struct migration_runner *r = ctx;
    if (code == ENGINE_OK) {
        r->post.left = r->post.tries = 0;
        return;
    }
    /* slower than a lock race's retries (retry.h): each run is a worker's
     * connection, on every proxy of a fleet that reads the steps left */
    long delay = POST_FIRST_RETRY_MS << (r->post.tries < 5 ? r->post.tries : 5);
    if (delay > POST_MAX_RETRY_MS)
        delay = POST_MAX_RETRY_MS;
    r->post.tries++;
    r->post.left = 1;
    r->post.due_ms = clock_now_ms() + delay;
    if (strstr(why, ENGINE_LOCK_HELD_MSG))
        log_debug("migration %s: the steps after its contract run elsewhere: %s", r->name, why);
    else
        log_warn("migration %s is complete; a step after its contract did not finish (%.600s); run again in %ld s",
                 r->name, why, delay / 1000);
}

static void after_post_steps(void *ctx, int code, const char *why)
{
    struct migration_runner *r = ctx;
    post_ended(r, code, why);
    log_info("migration %s completed", r->name);
    runner_report(r, RUNNER_EV_CUTOVER_COMMITTED, NULL, NULL);
}

static void spawn_post_steps(struct migration_runner *r)
{
    give_slot_to_step(r);
    if (engine_worker_run(&r->worker, ENGINE_JOB_POST, r->engine_db, NULL, 0, after_post_steps, r) != 0)
        after_post_steps(r, ENGINE_FAILED, r->worker.why);
}

/* Index drops and renames after the contract, traffic flowing, on the
 * worker (it takes the engine lock itself). The complete is answered when
 * they end; one that does not finish is left for the retries. */
static void run_post_steps(struct migration_runner *r)
{
    if (!r->have_plan || r->plan.post.n == 0) {
        log_info("migration %s completed", r->name);
        runner_report(r, RUNNER_EV_CUTOVER_COMMITTED, NULL, NULL);
        return;
    }
    r->post.tries = 0;
    release_lock_then(r, spawn_post_steps);
}

void post_left_by_record(struct migration_runner *r, int left)
{
    if (left && !r->post.left) {
        r->post.left = 1;
        r->post.tries = 0;
        /* the proxy that ran the contract is likely running them now */
        r->post.due_ms = clock_now_ms() + POST_FIRST_RETRY_MS;
    } else if (!left) {
        r->post.left = 0;
    }
}

void post_run_if_due(struct migration_runner *r)
{
    if (!r->post.left || r->phase != MIG_PH_COMPLETED || engine_worker_running(&r->worker) || r->holds_lock ||
        r->db.busy || clock_now_ms() < r->post.due_ms)
        return;
    if (engine_worker_run(&r->worker, ENGINE_JOB_POST, r->engine_db, NULL, 0, post_ended, r) != 0)
        post_ended(r, ENGINE_FAILED, r->worker.why);
}

/* ---- what the steps share ---- */

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

/* The cutover in progress (who blocks it, attempts so far), else the last. */
json_t *cutover_json(const struct migration_runner *r)
{
    return cutover_running(&r->cut) || r->have_cut_rep ? cutover_report_json(&r->cut.rep) : json_null();
}

/* Each release sees its own shape from start to complete, as
 * migration_lifecycle.c routes it per phase. A schema routed before it
 * exists is harmless: Postgres skips it on the search_path, and uses it
 * from the statement after it appears, with the same columns the table
 * had. */
void route_for(struct migration_runner *r, enum mig_phase p)
{
    const char *new_schema, *old_schema;
    record_route_schemas(p, r->cut_from, r->version_schema, r->old_schema, &new_schema, &old_schema);
    int routed = old_schema && r->name;
    /* the relay gives sessions of the new release the old release's schema
     * when it has none of their own */
    relay_route_version(r->relay, routed ? r->name : NULL, routed ? new_schema : NULL, routed ? old_schema : NULL);
    if (r->name) /* its route is in place: sessions declaring it wait for nothing */
        relay_version_known(r->relay, r->name);
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


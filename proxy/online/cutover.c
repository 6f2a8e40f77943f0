/* The cutover (see cutover.h). */
#include "cutover.h"

#include <assert.h>
#include <event2/event.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fleet.h"
#include "log.h"
#include "pgasync.h"
#include "relay_control.h"
#include "retry.h"

#define SQLSTATE_LOCK_NOT_AVAILABLE "55P03"
#define SQLSTATE_QUERY_CANCELED "57014"
#define SQLSTATE_FLEET_HOLD_LOST "PGT01" /* raised by the fleet's commit check */

/* Transactions that hold a lock on a migrated table and either have been
 * open for longer than the contract may wait for its lock, or have sat idle
 * inside the transaction for more than IDLE_IN_TX_BLOCKER_MS (their client,
 * not the server, decides when they end): the contract would only time out
 * behind them. A client between two statements of a short transaction is
 * idle in it for a moment, and is no blocker. Ours are left out. */
#define IDLE_IN_TX_BLOCKER_MS "50"
/* An autovacuum worker on the tables (not one preventing wraparound) is
 * cancelled here rather than named a blocker, as Postgres cancels one that
 * blocks a lock request after deadlock_timeout (longer than the contract
 * waits); the table is vacuumed again later. Only a superuser may cancel
 * autovacuum on every version; for other roles the worker stays a blocker.
 * See engine/autovacuum_yield.h for the engine's steps. */
static const char BLOCKERS_SQL[] =
    "WITH av AS (SELECT DISTINCT a.pid, CASE WHEN (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
    "                     THEN pg_cancel_backend(a.pid) ELSE false END AS cancelled"
    "  FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid"
    " WHERE a.backend_type = 'autovacuum worker' AND a.query NOT LIKE '%to prevent wraparound%'"
    "   AND l.locktype = 'relation' AND l.relation IN (SELECT to_regclass(t) FROM unnest($1::text[]) t))"
    "SELECT a.pid, coalesce(nullif(a.application_name, ''), a.usename::text, a.backend_type, '?'), a.state,"
    "       (extract(epoch FROM clock_timestamp() - a.xact_start) * 1000)::bigint, l.mode,"
    "       l.relation::regclass::text, left(regexp_replace(a.query, '\\s+', ' ', 'g'), 120)"
    "  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid()"
    "   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    "   AND l.relation IN (SELECT to_regclass(t) FROM unnest($1::text[]) t)"
    "   AND a.pid NOT IN (SELECT pid FROM av WHERE cancelled)"
    "   AND (a.xact_start < clock_timestamp() - make_interval(secs => $2::float8 / 1000)"
    "        OR (a.state IN ('idle in transaction', 'idle in transaction (aborted)')"
    "            AND a.state_change < clock_timestamp() - make_interval(secs => " IDLE_IN_TX_BLOCKER_MS " / 1000.0)))"
    " ORDER BY a.xact_start LIMIT 5";

static void attempt(struct cutover *c);

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static double ms_between(uint64_t from, uint64_t to)
{
    return from && to >= from ? (double)(to - from) / 1000.0 : -1;
}

const char *const cutover_attempt_outcomes[CUTOVER_ATTEMPT_OUTCOMES] = {"committed", "blocked", "abandoned",
                                                                         "refused", "failed"};

/* Most holds are tens of milliseconds; a drain budget is a few seconds. */
static const double hold_bounds_s[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

void cutover_totals_reset(struct cutover_totals *t)
{
    memset(t->attempts, 0, sizeof t->attempts);
    histogram_init(&t->hold_seconds, hold_bounds_s, (int)(sizeof hold_bounds_s / sizeof hold_bounds_s[0]));
}

/* Each attempt is counted once, by the first ending it reaches. */
static void attempt_ended(struct cutover *c, enum cutover_attempt_outcome outcome)
{
    if (!c->attempt_open)
        return;
    c->attempt_open = 0;
    c->totals.attempts[outcome]++;
}

static void finish(struct cutover *c, enum cutover_outcome outcome)
{
    assert(!c->holding); /* never report while traffic is still held */
    attempt_ended(c, outcome == CUTOVER_COMMITTED ? CUTOVER_ATTEMPT_COMMITTED
                     : outcome == CUTOVER_REFUSED ? CUTOVER_ATTEMPT_REFUSED
                     : outcome == CUTOVER_FAILED  ? CUTOVER_ATTEMPT_FAILED
                                                  : CUTOVER_ATTEMPT_ABANDONED);
    cutover_done_fn done = c->done;
    c->done = NULL;
    free(c->tables);
    c->tables = NULL;
    if (done)
        done(c->ctx, outcome, &c->rep);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    attempt(arg);
}

enum cutover_next cutover_next_after(const char *sqlstate, int attempts, int max_attempts)
{
    if (sqlstate && !retry_worthwhile(sqlstate) && strcmp(sqlstate, SQLSTATE_FLEET_HOLD_LOST) != 0)
        return CUTOVER_NEXT_FAIL;
    return attempts < max_attempts ? CUTOVER_NEXT_RETRY : CUTOVER_NEXT_GIVE_UP;
}

/* `why` may point into c->rep: copied before anything is formatted. */
static void retry_or_give_up(struct cutover *c, const char *why)
{
    char reason[sizeof c->rep.error];
    snprintf(reason, sizeof reason, "%s", why && why[0] ? why : "unknown reason");
    attempt_ended(c, CUTOVER_ATTEMPT_ABANDONED);
    if (cutover_next_after(NULL, c->rep.attempts, c->opt.max_attempts) == CUTOVER_NEXT_RETRY) {
        long delay = retry_delay_ms(RETRY_FIRST_MS, c->rep.attempts, &c->seed);
        log_migration(LOG_LEVEL_WARN, c->migration,
                      "cutover attempt %d/%d abandoned (%s); traffic flows, retrying in %ld ms", c->rep.attempts,
                 c->opt.max_attempts, reason, delay);
        snprintf(c->rep.error, sizeof c->rep.error, "%s", reason);
        struct timeval tv = {delay / 1000, (delay % 1000) * 1000};
        if (evtimer_add(c->retry_timer, &tv) == 0)
            return;
        snprintf(reason, sizeof reason, "%.600s; and the retry timer could not be armed", c->rep.error);
    }
    snprintf(c->rep.error, sizeof c->rep.error, "gave up after %d attempt%s: %.640s; nothing changed, traffic flows",
             c->rep.attempts, c->rep.attempts == 1 ? "" : "s", reason);
    log_error("%s", c->rep.error);
    finish(c, CUTOVER_GAVE_UP);
}

static void fail_now(struct cutover *c, const char *why)
{
    char reason[sizeof c->rep.error];
    snprintf(reason, sizeof reason, "%s", why && why[0] ? why : "unknown reason");
    snprintf(c->rep.error, sizeof c->rep.error, "attempt %d failed: %.640s; nothing changed, traffic flows",
             c->rep.attempts, reason);
    log_error("%s", c->rep.error);
    finish(c, CUTOVER_FAILED);
}

static void account_hold(struct cutover *c, const struct relay_hold_stats *st)
{
    c->rep.total_pause_ms += st->held_ms;
    if (st->held_ms > c->rep.max_pause_ms)
        c->rep.max_pause_ms = st->held_ms;
    c->rep.held_messages += st->held_messages;
    histogram_observe(&c->totals.hold_seconds, st->held_ms / 1000.0);
    log_migration(LOG_LEVEL_INFO, c->migration,
                  "cutover attempt %d held traffic for %.2f ms (%u messages waited)", c->rep.attempts, st->held_ms,
             st->held_messages);
}

/* What the fleet may be told about the contract: only an answered COMMIT
 * says it committed, and a COMMIT whose answer was lost says nothing (the
 * fleet then learns it from the hold's row). */
static enum fleet_outcome outcome_now(const struct cutover *c, int committed)
{
    if (committed)
        return FLEET_COMMITTED;
    return c->contract == 2 ? FLEET_UNKNOWN : FLEET_NOT_COMMITTED;
}

/* Our own traffic first, then the fleet's (see on_committed). */
static void release(struct cutover *c, enum fleet_outcome outcome)
{
    c->waiting = 0;
    if (c->holding) {
        c->holding = 0;
        relay_forget(c->relay, c);
        /* A COMMIT whose answer was lost may have committed: statements are
         * prepared again, which costs nothing but time if it did not. */
        if (outcome == FLEET_UNKNOWN)
            c->rep.reprepared += relay_reprepare(c->relay);
        struct relay_hold_stats st;
        relay_release(c->relay, &st);
        account_hold(c, &st);
    }
    if (c->fleet)
        fleet_release_all(c->fleet, outcome);
}

/* "session 7 (10.0.0.5:5123, app) in a transaction for 5012 ms, ..." */
static void describe_sessions(json_t *list, char *out, size_t cap)
{
    size_t used = strlen(out);
    size_t i;
    json_t *s;
    json_array_foreach(list, i, s) {
        const char *app = json_string_value(json_object_get(s, "application_name"));
        int n = snprintf(out + used, cap - used, "%sproxy session %lld (%s%s%s) in a transaction for %lld ms",
                         used ? "; " : "", (long long)json_integer_value(json_object_get(s, "id")),
                         json_string_value(json_object_get(s, "client")), app && app[0] ? ", " : "",
                         app ? app : "", (long long)json_integer_value(json_object_get(s, "in_transaction_ms")));
        if (n < 0 || (size_t)n >= cap - used)
            return;
        used += (size_t)n;
    }
}

/* Sessions through this proxy that are unlikely to reach a boundary within
 * the drain budget: already in a transaction for half of it. */
static json_t *long_transactions(struct cutover *c)
{
    json_t *busy = relay_busy_sessions(c->relay);
    json_t *slow = json_array();
    size_t i;
    json_t *s;
    json_array_foreach(busy, i, s) {
        json_t *ms = json_object_get(s, "in_transaction_ms");
        if (ms && json_integer_value(ms) * 2 >= c->opt.drain_timeout_ms)
            json_array_append(slow, s);
    }
    json_decref(busy);
    return slow;
}

static void blocked(struct cutover *c)
{
    c->rep.blocked_checks++;
    attempt_ended(c, CUTOVER_ATTEMPT_BLOCKED);
    memcpy(c->rep.blockers, c->seen, sizeof c->rep.blockers);
    char why[sizeof c->rep.blockers + 64];
    snprintf(why, sizeof why, "blocked by %s", c->rep.blockers);
    retry_or_give_up(c, why);
}

static void on_contract_rolled_back(void *ctx, PGresult *res, const char *error, const char *sqlstate);
static void on_committed(void *ctx, PGresult *res, const char *error, const char *sqlstate);

/* A failed statement: the transaction is rolled back before traffic moves,
 * so nothing the contract did is visible. */
static void roll_back(struct cutover *c, const char *error, const char *sqlstate)
{
    int lock = sqlstate && strcmp(sqlstate, SQLSTATE_LOCK_NOT_AVAILABLE) == 0;
    int budget = sqlstate && strcmp(sqlstate, SQLSTATE_QUERY_CANCELED) == 0;
    int fleet = sqlstate && strcmp(sqlstate, SQLSTATE_FLEET_HOLD_LOST) == 0;
    if (fleet)
        snprintf(c->rep.error, sizeof c->rep.error, "the fleet stopped holding before COMMIT (%s): %s",
                 SQLSTATE_FLEET_HOLD_LOST, error);
    else if (lock)
        snprintf(c->rep.error, sizeof c->rep.error, "lock timeout after %d ms (55P03): %s", c->opt.lock_timeout_ms,
                 error);
    else if (budget)
        snprintf(c->rep.error, sizeof c->rep.error, "the contract ran past its statement budget of %d ms: %s",
                 c->opt.statement_budget_ms, error);
    else
        snprintf(c->rep.error, sizeof c->rep.error, "%s%s%s%s", error, sqlstate ? " (" : "",
                 sqlstate ? sqlstate : "", sqlstate ? ")" : "");
    if (lock)
        c->rep.lock_wait_ms += c->opt.lock_timeout_ms;
    snprintf(c->failed_sqlstate, sizeof c->failed_sqlstate, "%s", sqlstate ? sqlstate : "");
    /* A COMMIT the server answered with an error did not commit; one whose
     * connection went away may have. */
    int lost = !sqlstate || !strncmp(sqlstate, "08", 2) || !strncmp(sqlstate, "57P", 3);
    if (c->contract == 2 && !lost)
        c->contract = 1;
    if (pgasync_send(c->db, "ROLLBACK", 0, NULL, on_contract_rolled_back, c) != 0) {
        release(c, outcome_now(c, 0));
        fail_now(c, c->rep.error);
    }
}

static void on_contract_rolled_back(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    (void)error;
    (void)sqlstate;
    struct cutover *c = ctx;
    release(c, outcome_now(c, 0));
    if (c->refused) {
        c->refused = 0;
        log_error("%s", c->rep.error);
        finish(c, CUTOVER_REFUSED);
        return;
    }
    if (cutover_next_after(c->failed_sqlstate, c->rep.attempts, c->opt.max_attempts) != CUTOVER_NEXT_FAIL)
        retry_or_give_up(c, c->rep.error);
    else
        fail_now(c, c->rep.error); /* retrying will not help */
}

/* Sends `prefix` + the statements the caller builds + `suffix`. */
static int send_built(struct cutover *c, const char *prefix, int tail, const char *suffix, pgasync_done_fn done)
{
    char *built = c->build_sql(c->ctx, &c->rep, tail);
    size_t n = built ? strlen(prefix) + strlen(built) + strlen(suffix) + 1 : 0;
    char *sql = built ? malloc(n) : NULL;
    if (sql)
        snprintf(sql, n, "%s%s%s", prefix, built, suffix);
    free(built);
    int rc = sql ? pgasync_send(c->db, sql, 0, NULL, done, c) : -1;
    if (!sql)
        snprintf(c->db->error, sizeof c->db->error, "out of memory");
    free(sql);
    return rc;
}

/* "pid 4242 (psql, 10.0.0.9, idle in transaction, in a transaction for
 * 5012 ms) touched the migrated tables: UPDATE checks ..." for each session
 * through no proxy, the ones that count first. Returns how many count (in
 * a transaction or touched the migrated tables); *listed: how many rows. */
static int describe_bypassing(const PGresult *res, char *out, size_t cap, int *listed)
{
    int touched = 0;
    size_t used = 0;
    out[0] = '\0';
    *listed = PQntuples(res);
    for (int pass = 1; pass >= 0; pass--)
        for (int i = 0; i < PQntuples(res); i++) {
            int t = PQgetvalue(res, i, 5)[0] == 't';
            if (t != pass)
                continue;
            touched += t;
            const char *xact_ms = PQgetvalue(res, i, 4);
            char in_tx[64] = "";
            if (strcmp(xact_ms, "0") != 0)
                snprintf(in_tx, sizeof in_tx, ", in a transaction for %s ms", xact_ms);
            int n = snprintf(out + used, cap - used, "%spid %s (%s, %s, %s%s)%s%.60s", used ? "; " : "",
                             PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
                             PQgetvalue(res, i, 3), in_tx, t ? " touched the migrated tables: " : ": ",
                             PQgetvalue(res, i, 6));
            if (n < 0 || (size_t)n >= cap - used)
                out[used] = '\0';
            else
                used += (size_t)n;
        }
    return touched;
}

/* The sessions that bypass the fleet, read in the contract's transaction
 * (fleet_held_wait_sql): 1 when they refuse the cutover (rep.error says
 * why). A failed look is advice lost, not a reason to stop. */
static int bypassing_refuses(struct cutover *c, const PGresult *res)
{
    if (!res || PQnfields(res) < 7) {
        log_migration(LOG_LEVEL_WARN, c->migration, "cutover: the look for sessions that bypass the proxies "
                      "returned nothing usable");
        return 0;
    }
    int listed = 0;
    int touched = describe_bypassing(res, c->rep.bypassing, sizeof c->rep.bypassing, &listed);
    if (touched && !c->opt.force) {
        /* The count says which of the listed sessions refuse it. */
        snprintf(c->rep.error, sizeof c->rep.error,
                 "refused: %d of the %d session%s that reach the database through no pgtandem proxy hold a "
                 "transaction or touched the migrated tables (%.560s); stop them, or complete with --force (their "
                 "statements then wait at most lock_timeout)",
                 touched, listed, listed == 1 ? "" : "s", c->rep.bypassing);
        return 1;
    }
    if (touched)
        log_migration(LOG_LEVEL_WARN, c->migration,
                      "cutover forced despite sessions that bypass the proxies: %s", c->rep.bypassing);
    return 0;
}

static void on_contract_body(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    struct cutover *c = ctx;
    c->t_body = now_us();
    if (error) {
        roll_back(c, error, sqlstate);
        return;
    }
    if (c->fleet && bypassing_refuses(c, res)) {
        c->refused = 1;
        if (pgasync_send(c->db, "ROLLBACK", 0, NULL, on_contract_rolled_back, c) != 0) {
            c->refused = 0;
            release(c, FLEET_NOT_COMMITTED);
            log_error("%s", c->rep.error);
            finish(c, CUTOVER_REFUSED);
        }
        return;
    }
    char *check = c->fleet ? fleet_commit_check_sql(c->fleet) : strdup("");
    c->contract = 2;
    int rc = check ? send_built(c, check, 1, ";\nCOMMIT", on_committed) : -1;
    free(check);
    if (rc != 0) {
        c->contract = 1; /* nothing was sent */
        roll_back(c, c->db->error, NULL);
    }
}

static void record_steps(struct cutover *c, uint64_t released)
{
    struct cutover_steps *st = &c->rep.steps;
    st->announce_ms = c->fleet ? ms_between(c->t_asked, c->t_announced) : -1;
    st->all_held_ms = c->fleet ? ms_between(c->t_announced, c->t_all_held) : ms_between(c->t_hold, c->t_all_held);
    st->local_drain_ms = ms_between(c->t_hold, c->t_drained);
    st->body_ms = ms_between(c->t_all_held, c->t_body);
    st->commit_ms = ms_between(c->t_body, c->t_commit);
    st->release_ms = ms_between(c->t_commit, released);
    st->acks_peer = st->acks_database = 0;
    if (c->fleet)
        fleet_hold_acks(c->fleet, &st->acks_database, &st->acks_peer);
    log_migration(LOG_LEVEL_INFO, c->migration,
                  "cutover attempt %d steps: fleet hold written in %.2f ms (nobody held yet); everyone held %.2f ms"
                  " after that (our own drain, begun once the others held, %.2f ms; acknowledgements: %d on the peer"
                  " port, %d in the database);"
                  " contract body %.2f ms; commit %.2f ms; traffic flowing %.2f ms after the commit",
                  c->rep.attempts, st->announce_ms, st->all_held_ms, st->local_drain_ms, st->acks_peer,
                  st->acks_database, st->body_ms, st->commit_ms, st->release_ms);
}

static void on_committed(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    struct cutover *c = ctx;
    c->t_commit = now_us();
    if (error) {
        roll_back(c, error, sqlstate);
        return;
    }
    /* Our own sessions go first, then the others are told: each release
     * written on the peer port wakes a proxy at once, and on a machine with
     * fewer cores than proxies every woken one ran before our own traffic
     * did (64 proxies on 2 cores: 45 ms from the COMMIT's answer to our
     * traffic flowing, against 1 ms for our own re-prepare). */
    c->rep.reprepared += relay_reprepare(c->relay);
    if (c->committed)
        c->committed(c->ctx);
    release(c, FLEET_COMMITTED);
    c->contract = 0;
    record_steps(c, now_us());
    log_migration(LOG_LEVEL_INFO, c->migration, "cutover committed on attempt %d", c->rep.attempts);
    finish(c, CUTOVER_COMMITTED);
}

/* Everyone holds: the contract, and in a fleet, in the same round trip,
 * the wait for every proxy's acknowledgement in its row and the look at
 * the sessions that bypass the fleet. */
static void run_contract(struct cutover *c)
{
    /* A connection lost between the body and the COMMIT must not leave the
     * transaction idle on the server holding its locks over every table it
     * touched: the server ends it itself. */
    char begin[384];
    snprintf(begin, sizeof begin,
             "BEGIN; SET LOCAL lock_timeout = '%dms'; SET LOCAL statement_timeout = '%dms';"
             " SET LOCAL idle_in_transaction_session_timeout = '%dms';"
             " SET LOCAL pgtandem.backfill = 'off'; SET LOCAL synchronous_commit = on;\n",
             c->opt.lock_timeout_ms, c->opt.statement_budget_ms, c->opt.statement_budget_ms);
    char *after = NULL;
    if (c->fleet) {
        char *tables = pgasync_ready(c->db) ? PQescapeLiteral(c->db->conn, c->tables, strlen(c->tables)) : NULL;
        after = tables ? fleet_held_wait_sql(c->fleet, tables, c->opt.drain_timeout_ms) : NULL;
        if (tables)
            PQfreemem(tables);
    } else {
        after = strdup("");
    }
    c->contract = 1;
    int rc = after ? send_built(c, begin, 0, after, on_contract_body) : -1;
    free(after);
    if (rc != 0) {
        c->contract = 0;
        release(c, FLEET_NOT_COMMITTED);
        fail_now(c, after ? c->db->error : "out of memory building the contract");
    }
}

static void hold_answered(struct cutover *c, int ok, const char *why);
static void hold_local(struct cutover *c);

static void on_drained(void *ctx, int drained, uint64_t waited_us)
{
    struct cutover *c = ctx;
    if (drained) {
        c->t_drained = now_us();
        hold_answered(c, 1, NULL);
        return;
    }
    /* The relay resumes by itself after this returns: name who was busy. */
    c->rep.blockers[0] = '\0';
    json_t *busy = relay_busy_sessions(c->relay);
    describe_sessions(busy, c->rep.blockers, sizeof c->rep.blockers);
    json_decref(busy);
    c->holding = 0;
    struct relay_hold_stats st = {(double)waited_us / 1000.0, relay_held_messages(c->relay)};
    account_hold(c, &st);
    char why[sizeof c->rep.blockers + 96];
    snprintf(why, sizeof why, "sessions stayed inside transactions past the drain timeout (%d ms): %s",
             c->opt.drain_timeout_ms, c->rep.blockers);
    hold_answered(c, 0, why);
}

/* The others hold: our own hold begins now (hold_traffic says why). */
static void on_fleet_held(void *ctx, int ok, const char *why)
{
    struct cutover *c = ctx;
    if (ok && c->waiting == 2) {
        c->waiting--;
        hold_local(c);
        return;
    }
    hold_answered(c, ok, why);
}

/* Both holds (this relay's, the fleet's) answer here; the first that fails
 * ends the other, so nobody stays held for an attempt that is over. */
static void hold_answered(struct cutover *c, int ok, const char *why)
{
    if (c->waiting <= 0)
        return;
    c->waiting--;
    if (!ok) {
        char reason[sizeof c->hold_why];
        snprintf(reason, sizeof reason, "%s", why && why[0] ? why : "the hold failed");
        release(c, FLEET_NOT_COMMITTED);
        retry_or_give_up(c, reason);
        return;
    }
    if (c->waiting == 0) {
        c->t_all_held = now_us();
        run_contract(c);
    }
}

static void hold_local(struct cutover *c)
{
    c->holding = 1;
    c->t_hold = now_us();
    char reason[192];
    snprintf(reason, sizeof reason, "cutover of %.100s: this proxy runs the contract", c->migration);
    if (relay_hold(c->relay, "cutover", reason, c->opt.drain_timeout_ms, on_drained, c) != 0) {
        c->holding = 0;
        hold_answered(c, 0, "another pause is in progress");
    }
}

/* The fleet's row is written and the others are being told. */
static void on_fleet_announced(void *ctx)
{
    struct cutover *c = ctx;
    c->t_announced = now_us();
}

static void hold_traffic(struct cutover *c)
{
    c->t_asked = now_us();
    c->t_hold = c->t_drained = c->t_all_held = c->t_body = c->t_commit = c->t_announced = 0;
    c->contract = 0;
    c->refused = 0;
    c->waiting = c->fleet ? 2 : 1;
    if (!c->fleet) {
        hold_local(c);
        return;
    }
    /* Our own traffic is held last, once every other proxy holds: our
     * drain is one boundary away like theirs, and our clients need not
     * wait while the fleet's acknowledgements come in (64 proxies on 2
     * cores: 44 ms of the coordinator's 69 ms hold). The contract waits for
     * both either way. Participants wait this long for the release before
     * they close the hold themselves: the drain, then the contract's lock
     * wait. */
    int hold_ms = c->opt.drain_timeout_ms + c->opt.lock_timeout_ms + 1000;
    if (fleet_hold_all(c->fleet, c->migration, c->opt.drain_timeout_ms, hold_ms, on_fleet_announced, on_fleet_held,
                       c) != 0) {
        c->waiting = 0;
        retry_or_give_up(c, "the fleet's connection to the database is not up");
    }
}

static void describe_lock_holders(const PGresult *res, char *out, size_t cap)
{
    size_t used = strlen(out);
    for (int i = 0; i < PQntuples(res); i++) {
        int n = snprintf(out + used, cap - used, "%spid %s (%s, %s) holds %s on %s in a transaction open for %s ms"
                         " (last query: %s)",
                         used ? "; " : "", PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
                         PQgetvalue(res, i, 4), PQgetvalue(res, i, 5), PQgetvalue(res, i, 3), PQgetvalue(res, i, 6));
        if (n < 0 || (size_t)n >= cap - used)
            return;
        used += (size_t)n;
    }
}

static void on_blockers(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)sqlstate;
    struct cutover *c = ctx;
    if (error) {
        /* The check is advice; a failing check must not stop the cutover. */
        log_migration(LOG_LEVEL_WARN, c->migration, "cutover: looking for blocking transactions failed: %s", error);
    } else if (res && PQntuples(res) > 0) {
        describe_lock_holders(res, c->seen, sizeof c->seen);
        blocked(c);
        return;
    }
    if (c->seen[0]) {
        blocked(c);
        return;
    }
    hold_traffic(c);
}

static void attempt(struct cutover *c)
{
    c->rep.attempts++;
    c->attempt_open = 1;
    c->seen[0] = '\0';
    if (!pgasync_ready(c->db)) {
        fail_now(c, "the engine connection is not open");
        return;
    }
    json_t *slow = long_transactions(c);
    describe_sessions(slow, c->seen, sizeof c->seen);
    json_decref(slow);
    char budget[32];
    snprintf(budget, sizeof budget, "%d", c->opt.lock_timeout_ms);
    const char *values[2] = {c->tables, budget};
    if (pgasync_send(c->db, BLOCKERS_SQL, 2, values, on_blockers, c) != 0)
        fail_now(c, c->db->error);
}

int cutover_start(struct cutover *c, struct event_base *base, struct relay *relay, struct fleet *fleet,
                  struct pgasync *db, const struct cutover_options *opt, const char *migration,
                  const char *tables_literal, cutover_sql_fn build_sql, cutover_done_fn done, void *ctx)
{
    assert(c && base && relay && db && opt && migration && build_sql && done);
    cutover_abort(c);
    memset(&c->rep, 0, sizeof c->rep);
    c->rep.steps = (struct cutover_steps){-1, -1, -1, -1, -1, -1, 0, 0};
    c->seed = (unsigned int)time(NULL) ^ (unsigned int)getpid();
    c->relay = relay;
    c->fleet = fleet;
    snprintf(c->migration, sizeof c->migration, "%s", migration);
    c->db = db;
    c->opt = *opt;
    c->build_sql = build_sql;
    c->done = done;
    c->ctx = ctx;
    c->tables = strdup(tables_literal ? tables_literal : "{}");
    if (!c->retry_timer)
        c->retry_timer = evtimer_new(base, retry_cb, c);
    if (!c->tables || !c->retry_timer) {
        c->done = NULL;
        return -1;
    }
    attempt(c);
    return 0;
}

int cutover_running(const struct cutover *c)
{
    return c->done != NULL;
}

void cutover_abort(struct cutover *c)
{
    if (c->retry_timer)
        evtimer_del(c->retry_timer);
    if (c->holding || c->waiting)
        release(c, outcome_now(c, 0));
    attempt_ended(c, CUTOVER_ATTEMPT_ABANDONED);
    c->done = NULL;
    free(c->tables);
    c->tables = NULL;
}

json_t *cutover_report_json(const struct cutover_report *rep)
{
    json_t *o = json_pack("{s:i,s:i,s:f,s:f,s:i,s:i,s:f}", "attempts", rep->attempts, "blocked_checks",
                          rep->blocked_checks, "pause_ms", rep->total_pause_ms, "max_pause_ms", rep->max_pause_ms,
                          "held_messages", (int)rep->held_messages, "reprepared", rep->reprepared, "lock_wait_ms",
                          rep->lock_wait_ms);
    if (o && rep->blockers[0])
        json_object_set_new(o, "blockers", json_string(rep->blockers));
    if (o && rep->bypassing[0])
        json_object_set_new(o, "bypassing", json_string(rep->bypassing));
    const struct cutover_steps *st = &rep->steps;
    if (o && st->body_ms >= 0 && st->commit_ms >= 0)
        json_object_set_new(o, "steps", json_pack("{s:f,s:f,s:f,s:f,s:f,s:f,s:i,s:i}", "announce_ms",
                                                  st->announce_ms, "all_held_ms", st->all_held_ms, "local_drain_ms",
                                                  st->local_drain_ms, "body_ms", st->body_ms, "commit_ms",
                                                  st->commit_ms, "release_ms", st->release_ms, "acks_peer",
                                                  st->acks_peer, "acks_database", st->acks_database));
    return o;
}

/* Who blocks the worker step: while the engine's expand, validations or
 * rollback run, the runner asks Postgres every second which sessions
 * the step's backend waits for (or that hold a lock on a migrated table),
 * logs them every few seconds, shows them in /status (blocked_by) and,
 * as the lifecycle says, answers a waiting rollback at once naming them.
 * It reads the engine connection between the runner's own statements. */
#include "runner_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "clock.h"
#include "engine.h"
#include "log.h"
#include "migration_state.h"

/* The migrated tables as a Postgres text[] literal, for the blocker check. */
char *tables_literal(const struct migration_runner *r)
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
    "   'backend_type', b.backend_type,"
    "   'waiting_now', who.now, 'waiting_pid', w.pid, 'waiting_query', left(w.query, 200))"
    "   ORDER BY who.now DESC, b.xact_start), '[]')"
    " FROM who JOIN pg_stat_activity b ON b.pid = who.blocker JOIN pg_stat_activity w ON w.pid = who.waiter"
    " WHERE b.pid <> pg_backend_pid() AND coalesce(b.application_name, '') NOT LIKE 'pgtandem%'"
    "   AND (who.now OR b.xact_start < clock_timestamp() - interval '1 second')";

#define BLOCKED_POLL_MS 1000
#define BLOCKED_LOG_MS 5000   /* a WARN every few seconds while it waits */
#define BLOCKED_KEEP_MS 10000 /* a step that retries waits in spurts: the last blocker stays shown this long */

static const char *field(json_t *o, const char *key, const char *absent)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : absent;
}

/* The first blocker that is a session: an autovacuum worker holding the
 * lock is cancelled by the engine's step when its lock attempt gives up
 * (autovacuum_yield.h), so it blocks nothing for long. NULL: none. */
static json_t *session_blocker(json_t *by)
{
    size_t i;
    json_t *b;
    json_array_foreach(by, i, b) {
        if (strcmp(field(b, "backend_type", ""), "autovacuum worker") != 0)
            return b;
    }
    return NULL;
}

/* A rollback whose step waits for another session's lock is not kept
 * waiting for it (the lifecycle's rule): it is answered now, naming who
 * holds the lock, and goes on by itself once that one lets go. */
void answer_rollback_if_blocked(struct migration_runner *r)
{
    int status = mig_waiter_on_blocked(MIG_WAIT_ROLLBACK, r->phase);
    json_t *b = session_blocker(r->blk.by);
    if (!r->rollback_w.fn || !status || !b)
        return;
    char msg[600];
    snprintf(msg, sizeof msg, "the rollback of %s goes on by itself once pid %lld (application_name '%.60s', %.40s,"
             " transaction since %.40s) lets go of its lock on a migrated table%s; GET /migrations/current follows"
             " it", r->name, (long long)json_integer_value(json_object_get(b, "pid")), field(b, "application_name", ""),
             field(b, "state", "?"), field(b, "xact_start", "-"),
             json_array_size(r->blk.by) > 1 ? " (and the others in blocked_by)" : "");
    log_warn("migration %s: rollback accepted: %s", r->name, msg);
    runner_answer(&r->rollback_w, status, json_pack("{s:s,s:s,s:s,s:O}", "status", mig_phase_word(r->phase), "name", r->name,
                                             "message", msg, "blocked_by", r->blk.by));
}

static void log_blockers(struct migration_runner *r)
{
    json_t *b = json_array_get(r->blk.by, 0);
    log_warn("migration %s: the %s step waits for a lock held by pid %lld (application_name '%s', %s, transaction"
             " since %s, last query: %.120s)%s; its statement: %.120s",
             r->name ? r->name : "-", mig_phase_word(r->phase), (long long)json_integer_value(json_object_get(b, "pid")),
             field(b, "application_name", ""), field(b, "state", "?"), field(b, "xact_start", "-"),
             field(b, "query", ""), json_array_size(r->blk.by) > 1 ? " and others" : "",
             field(b, "waiting_query", ""));
    r->blk.logged_ms = clock_now_ms();
}

static void on_blockers(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)sqlstate;
    struct migration_runner *r = ctx;
    r->blk.polling = 0;
    double now = clock_now_ms();
    json_t *found = !error && res && PQntuples(res) == 1 ? json_loads(PQgetvalue(res, 0, 0), 0, NULL) : NULL;
    if (json_array_size(found) > 0) {
        json_decref(r->blk.by);
        r->blk.by = found;
        r->blk.seen_ms = now;
        if (now - r->blk.logged_ms >= BLOCKED_LOG_MS)
            log_blockers(r);
        answer_rollback_if_blocked(r);
    } else {
        json_decref(found);
        if (r->blk.by && now - r->blk.seen_ms > BLOCKED_KEEP_MS) {
            json_decref(r->blk.by);
            r->blk.by = NULL;
            r->blk.logged_ms = 0;
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
        r->blk.polling = 1;
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
    } else if (!pgasync_ready(&r->db) && !r->conn.after_connect) {
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
void watch_blockers(struct migration_runner *r)
{
    if (!mig_phase_runs_step(r->phase)) {
        if (r->blk.polling && !r->holds_lock) {
            /* the next step needs the connection now, not after the answer */
            pgasync_close(&r->db);
            r->blk.polling = 0;
        }
        json_decref(r->blk.by);
        r->blk.by = NULL;
        r->blk.logged_ms = 0;
        if (r->blk.timer)
            evtimer_del(r->blk.timer);
        return;
    }
    if (!r->blk.timer)
        r->blk.timer = evtimer_new(r->base, blocked_timer_cb, r);
    struct timeval tv = {BLOCKED_POLL_MS / 1000, (BLOCKED_POLL_MS % 1000) * 1000};
    if (r->blk.timer && !evtimer_pending(r->blk.timer, NULL) && evtimer_add(r->blk.timer, &tv) != 0)
        log_warn("migration %s: cannot arm the blocker poll; blockers are not reported", r->name ? r->name : "-");
}

void runner_blockers_free(struct migration_runner *r)
{
    json_decref(r->blk.by);
    r->blk.by = NULL;
    if (r->blk.timer)
        event_free(r->blk.timer);
    r->blk.timer = NULL;
}

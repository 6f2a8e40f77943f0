/* The engine's blocking step driver (declared in engine.h): the step-list
 * machine run over the engine's connection, its waits slept in slices a
 * stop can cut, autovacuum workers that hold the lock a step waits for
 * cancelled as Postgres would. */
#include "engine.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "autovacuum_yield.h"
#include "clock.h"
#include "engine_checks.h"
#include "log.h"

int engine_nap(const struct engine *e, long ms)
{
    for (long left = ms; left > 0; left -= 50) {
        if (engine_stopped(e))
            return -1;
        clock_sleep_ms(left < 50 ? left : 50);
    }
    return engine_stopped(e) ? -1 : 0;
}

/* A lock attempt gave up: autovacuum workers on the database are cancelled
 * (autovacuum_yield.h). When the role may not cancel them, the next
 * attempts wait longer than deadlock_timeout, after which Postgres cancels a
 * blocking autovacuum itself (the application's statements may queue behind
 * such a wait for that long: said in the log). */
static void yield_to_autovacuum(struct engine *e, struct step_run *sr)
{
    struct autovacuum_yield y;
    if (autovacuum_yield(e->conn, &y) != 0)
        return;
    if (y.cancelled)
        log_info("cancelled %d autovacuum worker(s) (%s), which held the lock the migration waits for, as "
                 "Postgres does after deadlock_timeout for any conflicting lock request; the tables are "
                 "vacuumed again later", y.cancelled, y.tables);
    long wait = y.deadlock_timeout_ms + e->opt.lock_timeout_ms;
    if (y.refused && sr->lock_timeout_ms < wait) {
        sr->lock_timeout_ms = wait;
        log_warn("%d autovacuum worker(s) may hold the lock the migration waits for, and this role may not "
                 "cancel them (grant it pg_signal_backend); the next attempts wait %ld ms, past "
                 "deadlock_timeout, so that Postgres cancels them, and statements of the application may "
                 "wait behind them that long", y.refused, wait);
    }
}

/* Stopping (engine_stopped) ends it where no transaction is open. */
int engine_drive(struct engine *e, struct step_run *sr, char *err, size_t errlen)
{
    for (;;) {
        int boundary = step_run_at_boundary(sr);
        struct step_action a = step_run_next(sr, clock_now_ms());
        if (a.note)
            log_warn("%s", a.note);
        if (a.kind == STEP_DONE)
            return ENGINE_OK;
        if (a.kind == STEP_FAILED)
            return snprintf(err, errlen, "%s", sr->error), ENGINE_FAILED;
        if (a.kind == STEP_WAIT) {
            yield_to_autovacuum(e, sr);
            if (engine_nap(e, a.wait_ms) != 0)
                return snprintf(err, errlen, "stopped while waiting to retry"), ENGINE_FAILED;
            step_run_result(sr, 1, NULL, NULL, clock_now_ms());
            continue;
        }
        if (boundary && engine_stopped(e))
            return snprintf(err, errlen, "stopped"), ENGINE_FAILED;
        char state[6] = "", msg[1024] = "";
        int rc = engine_exec_simple(e->conn, a.sql, state, msg, sizeof msg);
        step_run_result(sr, rc == 0, state, msg, clock_now_ms());
    }
}

int engine_run_list(struct engine *e, const struct mig_steps *l, enum step_grouping grouping, const char *tail_sql,
                    struct engine_contract_report *rep, char *err, size_t errlen)
{
    return engine_run_list_locked(e, l, grouping, tail_sql, NULL, rep, err, errlen);
}

int engine_run_list_locked(struct engine *e, const struct mig_steps *l, enum step_grouping grouping,
                           const char *tail_sql, const char *lock_sql, struct engine_contract_report *rep, char *err,
                           size_t errlen)
{
    struct step_run sr;
    step_run_init(&sr, l, grouping, e->opt.lock_timeout_ms, e->opt.contract_attempts, e->opt.backoff_ms,
                  (unsigned int)time(NULL) ^ (unsigned int)getpid());
    sr.tail_sql = tail_sql;
    sr.lock_sql = lock_sql;
    int rc = engine_drive(e, &sr, err, errlen);
    if (rep) {
        rep->attempts = sr.attempts;
        rep->total_ms = sr.total_ms;
        rep->lock_wait_ms = sr.lock_wait_ms;
    }
    return rc;
}

void engine_record_error(PGconn *conn, const char *name, const char *error)
{
    char err[256];
    const char *v[2] = {name, error};
    PGresult *r = engine_exec_params(conn, "UPDATE pgtandem.migrations SET error = $2, updated_at = now() WHERE name = $1",
                                     2, v, err, sizeof err);
    if (!r)
        log_error("recording the error of %s: %s", name, err);
    PQclear(r);
}

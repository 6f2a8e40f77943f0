/* The steps after a contract (the plan's post list: a DROP INDEX
 * CONCURRENTLY, an index's rename), durable: each is counted in the state
 * row (post_done) as it commits, so one lost with its connection or its
 * proxy runs again from there, by whichever engine finds it left (the
 * proxy's retries, a restarted proxy, the next start, `migrate resume`).
 * See engine.h: engine_finish_post. */
#include "engine.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine_checks.h"
#include "log.h"
#include "migration_lifecycle.h"
#include "migration_plan.h"
#include "migration_state.h"
#include "pgasync.h"

/* A failure a later try may not meet: the connection or the server went,
 * the engine was stopped, a lock or the statement timed out. */
static int post_failure_passes(const struct engine *e, const char *sqlstate)
{
    static const char *const passing[] = {"55P03", "57014", "40P01", "40001"};
    if (PQstatus(e->conn) != CONNECTION_OK || engine_stopped(e) || pg_error_transient(sqlstate))
        return 1;
    for (size_t i = 0; i < sizeof passing / sizeof passing[0]; i++)
        if (sqlstate && !strcmp(sqlstate, passing[i]))
            return 1;
    return 0;
}

/* Step i and the record that it ran: one transaction for a transactional
 * step; a CONCURRENTLY step runs alone, then is recorded (run again after
 * a loss in between, it finds nothing: every such step is IF EXISTS, and
 * the step after it has not run). */
static int run_post_step(struct engine *e, const char *name, const struct mig_steps *post, size_t i, int *gave_up,
                         char *err, size_t errlen)
{
    char *done = mig_state_post_done_sql(e->conn, name, i + 1, post->n);
    if (!done)
        return snprintf(err, errlen, "out of memory"), ENGINE_FAILED;
    struct mig_steps one = {.v = &post->v[i], .n = 1, .cap = 1};
    struct step_run sr;
    step_run_init(&sr, &one, STEPS_EACH, e->opt.lock_timeout_ms, e->opt.contract_attempts, e->opt.backoff_ms,
                  (unsigned int)time(NULL) ^ (unsigned int)getpid());
    sr.tail_sql = one.v[0].mode == MIG_STEP_TXN ? done : NULL;
    int rc = engine_drive(e, &sr, err, errlen);
    if (rc == ENGINE_OK && !sr.tail_sql && engine_exec_simple(e->conn, done, NULL, err, errlen) != 0)
        rc = ENGINE_FAILED;
    if (rc != ENGINE_OK && !post_failure_passes(e, sr.sqlstate)) {
        char msg[1200];
        snprintf(msg, sizeof msg, "migration %s is complete but its step after the contract (%.300s) failed and is "
                 "not run again: %.700s", name, one.v[0].sql, err);
        log_error("%s", msg);
        engine_record_error(e->conn, name, msg);
        rc = engine_exec_simple(e->conn, done, NULL, err, errlen) == 0 ? ENGINE_OK : ENGINE_FAILED;
        if (rc == ENGINE_OK && gave_up) {
            *gave_up = 1;
            snprintf(err, errlen, "%s", msg);
        }
    }
    free(done);
    return rc;
}

int engine_run_post(struct engine *e, const char *name, const struct mig_steps *post, size_t from, int *gave_up,
                    char *err, size_t errlen)
{
    for (size_t i = from; i < post->n; i++) {
        int rc = run_post_step(e, name, post, i, gave_up, err, errlen);
        if (rc != ENGINE_OK)
            return rc;
    }
    return ENGINE_OK;
}

int engine_finish_post(struct engine *e, char *err, size_t errlen)
{
    assert(e->conn && e->locked && err && errlen > 0); /* under the engine lock: one runner of them */
    const char *v[1] = {mig_status_word(MIG_ST_COMPLETED)};
    PGresult *r = engine_exec_params(e->conn, "SELECT name, plan, post_done FROM pgtandem.migrations"
                                     " WHERE status = $1 AND post_done IS NOT NULL ORDER BY completed_at", 1, v,
                                     err, errlen);
    if (!r)
        return ENGINE_FAILED;
    int rc = ENGINE_OK;
    for (int row = 0; row < PQntuples(r) && rc == ENGINE_OK; row++) {
        const char *name = PQgetvalue(r, row, 0);
        struct mig_plan plan;
        if (PQgetisnull(r, row, 1) || mig_plan_from_json(PQgetvalue(r, row, 1), &plan, err, errlen) != 0) {
            snprintf(err, errlen, "migration %s: its stored plan cannot be read for the steps after its contract",
                     name);
            rc = ENGINE_FAILED;
            break;
        }
        size_t from = (size_t)atoi(PQgetvalue(r, row, 2));
        log_info("migration %s: running its %zu step(s) after the contract that did not finish", name,
                 plan.post.n > from ? plan.post.n - from : 0);
        rc = engine_run_post(e, name, &plan.post, from, NULL, err, errlen);
        if (rc == ENGINE_OK)
            log_info("migration %s: the steps after its contract are done", name);
        mig_plan_free(&plan);
    }
    PQclear(r);
    return rc;
}

/* The step-list machine (see step_run.h). */
#include "step_run.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "retry.h"

static struct step_action exec_sql(struct step_run *r, const char *sql)
{
    struct step_action a = {STEP_EXEC, sql, 0, r->note[0] ? r->note : NULL};
    return a;
}

void step_run_init(struct step_run *r, const struct mig_steps *steps, enum step_grouping grouping,
                   long lock_timeout_ms, int max_attempts, long backoff_ms, unsigned int seed)
{
    assert(r && steps);
    memset(r, 0, sizeof *r);
    r->steps = steps;
    r->grouping = grouping;
    r->lock_timeout_ms = lock_timeout_ms;
    r->max_attempts = max_attempts > 0 ? max_attempts : 1;
    r->backoff_ms = backoff_ms;
    r->seed = seed;
    r->st = SR_NEXT_GROUP;
}

static int group_is_alone(const struct step_run *r)
{
    return r->group < r->steps->n && r->steps->v[r->group].mode == MIG_STEP_ALONE;
}

/* The tail joins the transaction that ends the list (an empty one when the
 * list is empty). */
static int tail_due(const struct step_run *r)
{
    return r->tail_sql && r->group_end == r->steps->n;
}

/* Picks the next group, or ends: DONE, or FAILED when a KEEP_GOING run saw
 * a failure. An empty list with a tail still runs one transaction. */
static void next_group(struct step_run *r)
{
    size_t n = r->steps->n;
    if (!r->started) {
        r->started = 1;
        r->group = r->group_end = 0;
        if (n == 0 && r->tail_sql) {
            r->attempt = 0;
            r->st = SR_BEGIN;
            return;
        }
    } else {
        r->group = r->group_end;
    }
    if (r->group >= n) {
        r->st = r->any_failed ? SR_FAILED : SR_DONE;
        return;
    }
    r->group_end = r->group + 1;
    if (!group_is_alone(r) && r->grouping == STEPS_SHARED_TXN)
        while (r->group_end < n && r->steps->v[r->group_end].mode == MIG_STEP_TXN)
            r->group_end++;
    r->attempt = 0;
    r->alone_failed = 0;
    r->st = group_is_alone(r) ? SR_ALONE_SET : SR_BEGIN;
}

static void keep_error(struct step_run *r, const char *sqlstate, const char *error, int op_index)
{
    snprintf(r->sqlstate, sizeof r->sqlstate, "%s", sqlstate ? sqlstate : "");
    char msg[sizeof r->error];
    snprintf(msg, sizeof msg, "%s", error && error[0] ? error : "statement failed");
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = '\0';
    if (op_index >= 0)
        snprintf(r->error, sizeof r->error, "operations[%d]: %.990s", op_index, msg);
    else
        snprintf(r->error, sizeof r->error, "%s", msg);
}

static void group_failed(struct step_run *r)
{
    if (r->grouping != STEPS_KEEP_GOING) {
        r->st = SR_FAILED;
        return;
    }
    snprintf(r->pending, sizeof r->pending, "rollback step failed: %.1100s", r->error);
    if (!r->any_failed)
        snprintf(r->first_error, sizeof r->first_error, "%s", r->error); /* the one reported */
    r->any_failed = 1;
    r->st = SR_NEXT_GROUP;
}

struct step_action step_run_next(struct step_run *r, double now_ms)
{
    snprintf(r->note, sizeof r->note, "%s", r->pending);
    r->pending[0] = '\0';
    if (r->st == SR_NEXT_GROUP)
        next_group(r);
    switch (r->st) {
    case SR_BEGIN:
        r->attempt++;
        r->attempts = r->attempt;
        r->attempt_started_ms = now_ms;
        snprintf(r->scratch, sizeof r->scratch, "BEGIN; SET LOCAL lock_timeout = '%ldms'", r->lock_timeout_ms);
        return exec_sql(r, r->scratch);
    case SR_LOCK:
        return exec_sql(r, r->lock_sql);
    case SR_BODY:
        return exec_sql(r, r->steps->v[r->next].sql);
    case SR_TAIL:
        return exec_sql(r, r->tail_sql);
    case SR_COMMIT:
        return exec_sql(r, "COMMIT");
    case SR_ROLLBACK:
        return exec_sql(r, "ROLLBACK");
    case SR_WAIT: {
        long delay = retry_delay_ms(r->backoff_ms, r->attempt - 1, &r->seed);
        snprintf(r->note, sizeof r->note, "lock not available within %ldms (attempt %d/%d); retrying in %ldms",
                 r->lock_timeout_ms, r->attempt, r->max_attempts, delay);
        struct step_action a = {STEP_WAIT, NULL, delay, r->note};
        return a;
    }
    case SR_ALONE_SET:
        snprintf(r->scratch, sizeof r->scratch, "SET lock_timeout = '%ldms'", r->lock_timeout_ms * 10);
        return exec_sql(r, r->scratch);
    case SR_ALONE_RUN:
    case SR_ALONE_RETRY:
        return exec_sql(r, r->steps->v[r->group].sql);
    case SR_ALONE_CLEANUP:
    case SR_ALONE_CLEANUP_AGAIN:
        return exec_sql(r, r->steps->v[r->group].cleanup);
    case SR_ALONE_RESET:
        return exec_sql(r, "RESET lock_timeout");
    case SR_DONE: {
        struct step_action a = {STEP_DONE, NULL, 0, r->note[0] ? r->note : NULL};
        return a;
    }
    case SR_FAILED:
    case SR_NEXT_GROUP:
        break;
    }
    if (r->any_failed)
        snprintf(r->error, sizeof r->error, "%s", r->first_error);
    struct step_action a = {STEP_FAILED, NULL, 0, r->note[0] ? r->note : NULL};
    return a;
}

int step_run_at_boundary(const struct step_run *r)
{
    return r->st == SR_NEXT_GROUP || r->st == SR_BEGIN || r->st == SR_ALONE_SET;
}

static void txn_statement_done(struct step_run *r)
{
    if (r->st == SR_BEGIN && r->lock_sql && r->group < r->steps->n) {
        r->st = SR_LOCK;
        return;
    }
    if (r->st == SR_BEGIN || r->st == SR_LOCK)
        r->next = r->group;
    else if (r->st == SR_BODY)
        r->next++;
    if (r->st == SR_BEGIN || r->st == SR_LOCK || r->st == SR_BODY)
        r->st = r->next < r->group_end ? SR_BODY : tail_due(r) ? SR_TAIL : SR_COMMIT;
    else if (r->st == SR_TAIL)
        r->st = SR_COMMIT;
}

static void txn_result(struct step_run *r, int ok, const char *sqlstate, const char *error, double now_ms)
{
    if (r->st == SR_ROLLBACK) { /* its own outcome does not matter */
        if (retry_worthwhile(r->sqlstate) && r->attempt < r->max_attempts) {
            r->lock_wait_ms += now_ms - r->attempt_started_ms;
            r->st = SR_WAIT;
        } else {
            group_failed(r);
        }
        return;
    }
    if (r->st == SR_WAIT) {
        r->st = SR_BEGIN;
        return;
    }
    if (!ok) {
        keep_error(r, sqlstate, error, r->st == SR_BODY ? r->steps->v[r->next].op_index : -1);
        r->total_ms += now_ms - r->attempt_started_ms;
        r->st = SR_ROLLBACK;
        return;
    }
    if (r->st == SR_COMMIT) {
        r->total_ms += now_ms - r->attempt_started_ms;
        r->st = SR_NEXT_GROUP;
        return;
    }
    txn_statement_done(r);
}

static void alone_result(struct step_run *r, int ok, const char *sqlstate, const char *error)
{
    const struct mig_step *s = &r->steps->v[r->group];
    switch (r->st) {
    case SR_ALONE_SET:
        r->st = SR_ALONE_RUN;
        break;
    case SR_ALONE_RUN:
        if (ok) {
            r->st = SR_ALONE_RESET;
            break;
        }
        keep_error(r, sqlstate, error, -1);
        r->alone_failed = 1;
        if (s->cleanup)
            snprintf(r->pending, sizeof r->pending, "index build failed (%.1000s); dropping the invalid index and retrying",
                     r->error);
        r->st = s->cleanup ? SR_ALONE_CLEANUP : SR_ALONE_RESET;
        break;
    case SR_ALONE_CLEANUP:
        r->st = ok ? SR_ALONE_RETRY : SR_ALONE_CLEANUP_AGAIN;
        break;
    case SR_ALONE_RETRY:
        r->alone_failed = !ok;
        if (!ok)
            keep_error(r, sqlstate, error, -1);
        r->st = ok ? SR_ALONE_RESET : SR_ALONE_CLEANUP_AGAIN;
        break;
    case SR_ALONE_CLEANUP_AGAIN:
        if (!ok)
            snprintf(r->pending, sizeof r->pending, "could not drop the invalid index: %.1000s", error ? error : "");
        r->st = SR_ALONE_RESET;
        break;
    case SR_ALONE_RESET:
        if (!r->alone_failed) {
            r->st = SR_NEXT_GROUP;
            break;
        }
        if (s->op_index >= 0) {
            char msg[sizeof r->error];
            snprintf(msg, sizeof msg, "%s", r->error);
            snprintf(r->error, sizeof r->error, "operations[%d]: %.990s", s->op_index, msg);
        }
        group_failed(r);
        break;
    default:
        break;
    }
}

void step_run_result(struct step_run *r, int ok, const char *sqlstate, const char *error, double now_ms)
{
    if (r->st >= SR_ALONE_SET && r->st <= SR_ALONE_RESET)
        alone_result(r, ok, sqlstate, error);
    else if (r->st != SR_DONE && r->st != SR_FAILED && r->st != SR_NEXT_GROUP)
        txn_result(r, ok, sqlstate, error, now_ms);
}

/* Running a list of migration steps (expand, validations, rollback, the
 * CLI's contract) as a machine that does no I/O: it says which statement
 * to run next or how long to wait, and is told each statement's outcome.
 * The rules live here once: consecutive transactional steps share one
 * transaction with lock_timeout; a lock race (55P03) rolls it back and
 * retries with the one retry policy (retry.h); a CONCURRENTLY step runs
 * alone with a longer lock_timeout, and one with a cleanup (an index build,
 * whose failure leaves an INVALID index) is cleaned up and tried once more;
 * a rollback keeps going past a failing step. A driver (engine.c's over
 * blocking libpq) executes what it says. Time is an input (now_ms), so
 * tests drive it with a fake clock (tests/unit/test_step_run.c). */
#ifndef PGTANDEM_STEP_RUN_H
#define PGTANDEM_STEP_RUN_H

#include <stddef.h>

#include "migration_sql.h"

enum step_grouping {
    STEPS_SHARED_TXN, /* consecutive transactional steps in one transaction */
    STEPS_EACH,       /* each step its own transaction: a VALIDATE must not keep an ADD's lock */
    STEPS_KEEP_GOING  /* rollback: every step runs; the first failure is reported */
};

enum step_action_kind { STEP_EXEC, STEP_WAIT, STEP_DONE, STEP_FAILED };

struct step_action {
    enum step_action_kind kind;
    const char *sql;        /* STEP_EXEC */
    long wait_ms;           /* STEP_WAIT */
    const char *note;       /* something worth a WARN line now (a retry, a cleanup), or NULL */
};

enum step_run_state {
    SR_NEXT_GROUP, SR_BEGIN, SR_LOCK, SR_BODY, SR_TAIL, SR_COMMIT, SR_ROLLBACK, SR_WAIT,
    SR_ALONE_SET, SR_ALONE_RUN, SR_ALONE_CLEANUP, SR_ALONE_RETRY, SR_ALONE_CLEANUP_AGAIN, SR_ALONE_RESET,
    SR_DONE, SR_FAILED
};

struct step_run {
    /* settings */
    const struct mig_steps *steps;
    enum step_grouping grouping;
    long lock_timeout_ms;
    int max_attempts;
    long backoff_ms;
    unsigned int seed;
    const char *tail_sql;   /* joins the last transaction (the state update that commits with it); may be NULL */
    const char *lock_sql;   /* runs first in each shared transaction: its tables' locks in one order
                             * (expand_locks.h); may be NULL */
    /* progress */
    enum step_run_state st;
    size_t group, group_end, next; /* steps [group, group_end); next statement of it */
    int attempt;
    int alone_failed;
    int any_failed;
    int started;
    double attempt_started_ms;
    /* report */
    int attempts;           /* of the last transaction */
    double total_ms, lock_wait_ms;
    char sqlstate[6];
    char error[1024];       /* why it failed (KEEP_GOING: its first failure) */
    char first_error[1024]; /* KEEP_GOING: the first failure, while later steps run */
    char scratch[128];      /* a generated statement (BEGIN ..., SET ...) */
    char pending[1200];     /* a note from the last result, returned with the next action */
    char note[1200];
};

void step_run_init(struct step_run *r, const struct mig_steps *steps, enum step_grouping grouping,
                   long lock_timeout_ms, int max_attempts, long backoff_ms, unsigned int seed);
struct step_action step_run_next(struct step_run *r, double now_ms);
/* Whether the next action starts a transaction or a CONCURRENTLY step (or
 * ends the list): where a driver that was asked to stop may stop, with no
 * transaction open. */
int step_run_at_boundary(const struct step_run *r);
/* The outcome of the last STEP_EXEC (ok, or its SQLSTATE and message), or
 * the end of a STEP_WAIT (ok = 1). */
void step_run_result(struct step_run *r, int ok, const char *sqlstate, const char *error, double now_ms);

#endif

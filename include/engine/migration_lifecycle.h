/* A migration's lifecycle in one place, pure (no I/O): the statuses of
 * record (column status of pgtandem.migrations) and the only spelling of
 * their words, the phases of the engine inside the proxy, which phase may
 * follow which, what each admin request may do in each phase, when a
 * request that waits for a phase to end is answered and with what, and
 * which shape each release sees in each phase. The CLI's engine, the
 * proxy's runner (online/migration_runner.c), the fleet, the admin API and the
 * status page all ask here; tests/unit/test_migration_lifecycle.c drives
 * every phase against every request and every move. */
#ifndef PGTANDEM_MIGRATION_LIFECYCLE_H
#define PGTANDEM_MIGRATION_LIFECYCLE_H

#include <stddef.h>

/* ---- the status of record ---- */

enum mig_status {
    MIG_ST_EXPANDING,   /* expand runs (or its engine died mid-way: resume redoes it) */
    MIG_ST_BACKFILLING, /* expanded; the backfill or the validations after it run */
    MIG_ST_ACTIVE,      /* both shapes live, each release sees its own; complete may run */
    MIG_ST_SWITCHED,    /* completed with a revert window: everyone sees the new shape, the old one kept */
    MIG_ST_COMPLETED,   /* contracted: the old shape is gone */
    MIG_ST_ROLLED_BACK, /* undone: the database is as before the start */
    MIG_ST_FAILED,      /* expand failed and undid itself; nothing left to contract */
    MIG_NSTATUSES
};

/* The status's word as stored and shown ("" for a value out of range). */
const char *mig_status_word(enum mig_status st);
/* The status a word names; -1 for NULL or a word that is none. */
int mig_status_of_word(const char *word);

/* In progress: a migration that holds the database in two shapes, whose
 * next step (backfill, complete, finalize, revert, rollback) is still to
 * come. The one definition: the engine's "migration in progress" query,
 * the runner's refusal of a second start and the fleet's fence on an
 * expired lease all use it. */
int mig_status_in_progress(enum mig_status st);
/* The same for a word read from the table; 0 for a word that is no status. */
int mig_word_in_progress(const char *word);

enum mig_status_set { MIG_SET_EVERY, MIG_SET_IN_PROGRESS, MIG_SET_ENDED };
/* The set's words as a text[] literal ("{expanding,active}"), a parameter
 * of SQL text that is a constant (the fleet's heartbeat, the followed
 * migration's query: status = ANY($n::text[])); same returns. */
int mig_status_array_literal(enum mig_status_set set, char *out, size_t cap);
/* The set's words as SQL literals for an IN list ("'expanding','active'");
 * returns the length, or -1 when cap is too small (out is then ""). */
#define MIG_STATUS_SQL_LIST_MAX 128
int mig_status_sql_list(enum mig_status_set set, char *out, size_t cap);

/* ---- the runner's phases ---- */

/* The statuses of record plus the runner's own steps between them:
 * finishing (the validations after the backfill), completing (a cutover:
 * complete, finalize or revert) and rolling_back. Values are stable (the
 * metrics list them in this order). */
enum mig_phase {
    MIG_PH_IDLE, MIG_PH_EXPANDING, MIG_PH_BACKFILLING, MIG_PH_FINISHING, MIG_PH_ACTIVE, MIG_PH_COMPLETING,
    MIG_PH_COMPLETED, MIG_PH_ROLLING_BACK, MIG_PH_ROLLED_BACK, MIG_PH_FAILED, MIG_PH_SWITCHED,
    MIG_NPHASES
};

const char *mig_phase_word(enum mig_phase p);
/* -1 for NULL or a word that is no phase. */
int mig_phase_of_word(const char *word);
/* Every phase's word, in enum order (MIG_NPHASES of them). */
const char *const *mig_phase_words(void);

/* What a cutover (phase completing) does under its hold. */
enum mig_cut {
    MIG_CUT_CONTRACT, /* the contract: the old shape goes (complete, finalize) */
    MIG_CUT_SWITCH,   /* every session to the new shape, the old one kept (complete with a revert window) */
    MIG_CUT_REVERT    /* every session back to the old shape; the rollback follows */
};

/* The status of record while the runner is in phase p; cut_from is the
 * phase a cutover started from (active or switched). -1 where the phase
 * has none of its own (idle, and rolling_back: the row keeps what it had
 * until the rollback commits). */
int mig_phase_status(enum mig_phase p, enum mig_phase cut_from);
/* The phase a status of record puts a runner in when it reads it. */
enum mig_phase mig_phase_of_status(enum mig_status st);

int mig_phase_in_progress(enum mig_phase p);
/* 1 when a start asked of the runner in phase p (its migration in flight)
 * runs beside it, on an engine of its own (proxy/online/runner_beside.c),
 * as `migrate start --db` would: in every phase of the migration in
 * flight but its cutover (completing) and its rollback, which a start
 * waits out. */
int mig_start_beside(enum mig_phase p);
/* A step of the engine runs on the worker (expand, validations, rollback). */
int mig_phase_runs_step(enum mig_phase p);
/* The backfill is behind it: every row is done. */
int mig_phase_past_backfill(enum mig_phase p);
/* The phase's own step owns the state row until it ends (finishing,
 * rolling_back): a status read back then, from a read sent before the
 * step began, is stale and moves nothing. */
int mig_phase_owns_record(enum mig_phase p);

/* ---- which phase may follow which ---- */

enum mig_cause {
    MIG_BY_WORK,  /* the runner's own step ended (or failed, or a request started one) */
    MIG_BY_RECORD /* the status of record was read back (a restart, another proxy, a lost COMMIT) */
};

/* 1 when the runner may move from `from` to `to` for that cause. A move
 * the table forbids is a bug in the runner. */
int mig_move_allowed(enum mig_phase from, enum mig_phase to, enum mig_cause cause);

/* What the runner's lower parts report when the work of a phase ends. */
enum mig_event {
    MIG_EV_STEP_DONE,          /* the phase's own step ended well (expand, the validations, the rollback) */
    MIG_EV_STEP_FAILED,        /* it failed (a rollback asked for runs instead: the runner's fact) */
    MIG_EV_LOCK_LOST,          /* another engine took the lock to do the step: this runner follows it */
    MIG_EV_CUTOVER_COMMITTED,  /* the cutover's transaction committed (and, for a contract, its post steps ran) */
    MIG_EV_CUTOVER_ABANDONED,  /* refused, not committed, or the database away: back where it started */
    MIG_NEVENTS
};

/* The phase the runner's own work moves it to when event ev ends the work
 * of phase p; cut and cut_from say what a cutover did and where it began.
 * p itself where the event moves nothing. Every answer is a move
 * mig_move_allowed(p, answer, MIG_BY_WORK) accepts (or no move). */
enum mig_phase mig_phase_after(enum mig_phase p, enum mig_event ev, enum mig_cut cut, enum mig_phase cut_from);

/* ---- requests: admission ---- */

enum mig_request {
    MIG_REQ_START, MIG_REQ_STATUS, MIG_REQ_COMPLETE, MIG_REQ_ROLLBACK, MIG_REQ_FINALIZE, MIG_REQ_REVERT,
    MIG_NREQUESTS
};

/* What the runner knows besides its phase. */
struct mig_facts {
    const char *name;     /* the migration (NULL: none known) */
    int step_running;     /* the phase's step runs here and can be stopped (a worker step, the drain before expand) */
    int following;        /* another engine of the fleet does the work */
    int rollback_asked;   /* a rollback was asked for and has not started yet */
    int start_checking;   /* a start waits for its connection-slot check */
};

const char *mig_request_word(enum mig_request q);

/* 0 when request q may go ahead in phase p; else the HTTP status to answer
 * (404 nothing to act on, 409 not in this phase) with why in `why`. How
 * an admitted request goes ahead (stopping a step first, waiting for a
 * batch in flight) is the runner's. */
int mig_admit(enum mig_phase p, enum mig_request q, const struct mig_facts *f, char *why, size_t cap);
/* How soon a request refused for a moment may be asked again: the proxy
 * follows a migration another engine runs from its row, a look behind
 * (the next look comes within a heartbeat). */
#define MIG_RETRY_FOLLOW_MS 250
/* MIG_RETRY_FOLLOW_MS when mig_admit refuses q in phase p only because
 * the phase is this proxy's last look at another engine's migration (a
 * complete while it follows an expand or a backfill, which may have ended
 * since: `complete --db` right after `start --db`), else 0. */
int mig_admit_retry_ms(enum mig_phase p, enum mig_request q, const struct mig_facts *f);
/* A refusal: returns status, with why (when given) formatted. */
int mig_refuse(int status, char *why, size_t cap, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* ---- requests that wait for a phase to end ---- */

/* complete (and finalize, revert) waits while its cutover runs; rollback
 * while its step is stopped, its batch ends or the rollback runs. */
enum mig_waiter { MIG_WAIT_COMPLETE, MIG_WAIT_ROLLBACK, MIG_NWAITERS };

/* 1 when a waiter of that kind may exist while the runner is in phase p. */
int mig_waiter_may_wait(enum mig_waiter w, enum mig_phase p);

/* What decides the answers on a move. */
struct mig_wait_facts {
    enum mig_cut cut;        /* the cutover a waiting complete asked for */
    int error;               /* the runner has an error to report */
    int db_unavailable;      /* the cutover ended because the database could not be reached */
    int stopping_backfill;   /* a rollback waits for the batch in flight, then runs */
    int refused;             /* the last step ended ENGINE_INVALID (refused before it changed anything) */
};

/* For each waiter: its HTTP status when the move answers it, 0 when it
 * keeps waiting. A complete waiting for a revert is not answered when the
 * revert's cutover commits: it becomes the rollback's waiter (becomes). */
struct mig_answers {
    int status[MIG_NWAITERS];
    int complete_becomes_rollback;
};

/* The answers a move from `from` to `to` gives the waiters present. */
void mig_waiters_on_move(enum mig_phase from, enum mig_phase to, const int present[MIG_NWAITERS],
                         const struct mig_wait_facts *f, struct mig_answers *out);

/* A waiting rollback whose step is blocked by another session's lock is
 * not kept waiting for it: 202 (the rollback goes on, the answer names
 * the blocker). 0: it keeps waiting. */
int mig_waiter_on_blocked(enum mig_waiter w, enum mig_phase p);

/* ---- which shape each release sees ---- */

enum mig_shape {
    MIG_SHAPE_NONE, /* not routed: the tables as they are (no migration, or it ended) */
    MIG_SHAPE_OLD,  /* the old shape's views */
    MIG_SHAPE_NEW   /* the new shape's views (the version schema) */
};

/* The shape the new release (sessions that declared this migration in
 * pgtandem.version) and the old release (every other session) get in
 * phase p; cut_from as for mig_phase_status. */
void mig_routes(enum mig_phase p, enum mig_phase cut_from, enum mig_shape *new_release, enum mig_shape *old_release);

#endif

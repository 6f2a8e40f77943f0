/* The migration engine: runs a migration's phases against one database and
 * records every step in schema pgtandem of that database (so any process can
 * resume). Driven here with blocking libpq; the SQL of each phase
 * comes from migration_plan and each backfill batch is a discrete step
 * (backfill.h), so an event loop can drive the same pieces asynchronously.
 * Return values are exit statuses: ENGINE_OK, ENGINE_FAILED (operational),
 * ENGINE_INVALID (bad input; nothing was changed). */
#ifndef PGTANDEM_ENGINE_H
#define PGTANDEM_ENGINE_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>

#include "backfill.h"
#include "migration.h"
#include "migration_plan.h"
#include "migration_state.h"
#include "step_run.h"

enum { ENGINE_OK = 0, ENGINE_FAILED = 1, ENGINE_INVALID = 2 };


struct backfill_pace;
struct tool_history;

struct engine_options {
    long lock_timeout_ms;       /* DDL and contract lock_timeout (default 200) */
    int contract_attempts;      /* bounded retries of the contract (default 10) */
    long backoff_ms;            /* first retry delay, doubled each time, with jitter */
    int skip_backfill;          /* start: stop after expand (tests, operators) */
    long stop_after_batches;    /* start/resume: stop after N batches (0 = run to end) */
    long backfill_workers;      /* start/resume: batches at once (0: the migration's backfill.workers) */
    int validate_only;          /* complete: run the checks that precede the cutover, then stop */
    /* Another thread sets *stop to have the engine give up between
     * statements (it also cancels the one running); NULL: never. */
    const atomic_int *stop;
    long lock_wait_ms;          /* exclusive open: wait this long for the engine lock (0: refuse at once) */
    int lock_wait_migrate_only; /* ... and only while another `pgtandem migrate` holds it */
    /* Called after every backfill batch with its table's ranges summed
     * (backfill_summary), and with finished=1 once the table is done. */
    void (*on_progress)(const struct backfill *b, int finished, void *arg);
    void *progress_arg;
    /* complete, rollback, resume, pause, status: the migration in flight of
     * this name; NULL: the one in flight (refused, naming them, when
     * several are). */
    const char *target;
    /* start: refused while any other migration is in flight (a proxy
     * runs one migration of its own) */
    int alone;
    /* The backfill keeps this pace, which another thread sets (a proxy's
     * latency budget, backfill_drive.h); NULL: its own throttle alone. */
    struct backfill_pace *pace;
    /* start DIR: the directory's tool and its files (tool_history.h),
     * whose rows each start writes after its expand; NULL: none. */
    struct tool_history *tool;
};

struct engine {
    PGconn *conn;
    const char *uri;            /* borrowed from engine_open's caller: more backfill workers connect to it */
    struct engine_options opt;
    int locked;
    int lent;                   /* the lock is another session's, held for this engine (ENGINE_LOCK_LENT) */
    int let_go;                 /* let go of for a backfill, the migration's own lock held instead */
    int rollback_check;         /* after engine_rollback: an enum shape_check (shape_record.h), -1 none */
    char rollback_diff[1024];   /* SHAPE_OTHERS_MEANWHILE: the migrations that changed the schema since */
};

struct engine_contract_report {
    int attempts;
    double lock_wait_ms;        /* time lost to attempts that hit lock_timeout */
    double total_ms;
    int post_gave_up;           /* committed, but a step after it failed for good (engine_complete: ENGINE_FAILED) */
};

void engine_default_options(struct engine_options *o);
/* engine_open's part in the one-engine-per-database advisory lock. */
enum engine_lock {
    ENGINE_LOCK_NONE,   /* reads only: status, evidence */
    ENGINE_LOCK_TAKE,   /* takes it (refused with a clear message when another engine holds it) */
    ENGINE_LOCK_LENT    /* the caller's other session holds it for this engine until the engine is closed:
                         * a lock handed from session to session would be free in between, and another
                         * engine waiting for it would take it there */
};
/* Connects; with a lock taken or lent, creates the state schema too. */
int engine_open(struct engine *e, const char *uri, const struct engine_options *o, enum engine_lock lock,
                char *err, size_t errlen);
/* Lets go of the engine lock before closing: a backend ends a moment after
 * its client has gone, and the next engine (a script's next command, the
 * proxy's next step) must not find the lock still held. */
void engine_close(struct engine *e);
/* Whether *opt.stop was set. */
int engine_stopped(const struct engine *e);

/* Validates m against the live catalog and builds its plan (no changes). */
int engine_prepare(struct engine *e, const struct migration *m, struct mig_plan *plan, char *err,
                   size_t errlen);
int engine_start(struct engine *e, const struct migration *m, char *err, size_t errlen);
/* A chain (list[0..n), parent-first, e.g. mig_load_dir): the migrations
 * already completed must be its first ones, unchanged; the pending ones
 * are started as one (mig_merge), in one expand, backfill and cutover, and
 * all recorded as completed when it completes. */
int engine_start_chain(struct engine *e, const struct migration *list, size_t n, char *err, size_t errlen);
/* A chain, each pending file started as its own migration, in order,
 * after every one is checked against the ones before it and the ones in
 * flight by the rules of migration_flight.h. When the files share a table
 * those rules do not allow: EACH_ONLY (--each) is refused before any DDL;
 * EACH_OR_MERGED (start DIR's default) starts the pending ones as one
 * (engine_start_chain), saying why, unless a file of the chain is in
 * flight already. A start that fails leaves the ones before it in flight,
 * saying so. */
enum engine_each_mode { ENGINE_EACH_OR_MERGED, ENGINE_EACH_ONLY };
int engine_start_each(struct engine *e, const struct migration *list, size_t n, enum engine_each_mode mode,
                      char *err, size_t errlen);
/* The chain's first migration not completed yet in *pending (n: none), after
 * the checks engine_start_chain makes: the completed ones come first and
 * are unchanged. Changes nothing. */
int engine_chain_pending(struct engine *e, const struct migration *list, size_t n, size_t *pending, char *err,
                         size_t errlen);
/* Continues the migration in progress: re-runs an interrupted expand,
 * continues the backfill from its checkpoint. */
int engine_resume(struct engine *e, char *err, size_t errlen);
/* Validates the constraints that need a scan (traffic flows), then runs the
 * contract. Rows that violate a constraint stop it before the contract, with
 * their count and the first one's key; the migration stays active. */
int engine_complete(struct engine *e, struct engine_contract_report *rep, char *err, size_t errlen);
/* Runs the steps after a contract that a completed migration has left
 * (post_done in its state row: the step lost with its connection or its
 * proxy), from where they stopped, each recorded as it commits. A step
 * whose failure a later try may not meet (a lost connection, a lock or
 * statement timeout, a stop) ends it with ENGINE_FAILED and stays left;
 * any other failure is recorded as the migration's error and the step is
 * not run again. ENGINE_OK when none is left. engine_start runs it first:
 * what a new migration plans on is the schema after every earlier step. */
int engine_finish_post(struct engine *e, char *err, size_t errlen);
/* Steps from..post->n of migration name's post list, each recorded as it
 * commits (engine_finish_post's run of one migration; complete's first).
 * gave_up (may be NULL) is set when a step failed for good, was recorded
 * and is not run again; err then says which, and the return is ENGINE_OK
 * (the steps after it ran). */
int engine_run_post(struct engine *e, const char *name, const struct mig_steps *post, size_t from, int *gave_up,
                    char *err, size_t errlen);
/* Runs the next batch of one range of the migration in progress again (a
 * batch that failed on the event loop): ENGINE_OK when it goes through,
 * else the failure with the row and expression that cause it. */
int engine_retry_batch(struct engine *e, const char *schema, const char *table, int range_no, char *err,
                       size_t errlen);
/* Rolls back the migration in progress; with a name, that migration
 * whatever its status (the proxy's rollback of its own migration): one
 * stopped before it recorded anything has nothing to undo (ENGINE_OK), a
 * failed one is undone again and recorded rolled back, a completed one is
 * refused (ENGINE_INVALID). */
int engine_rollback(struct engine *e, const char *name, char *err, size_t errlen);
/* Status of the current (or most recent) migration; caller owns the JSON. */
int engine_status(struct engine *e, json_t **out, char *err, size_t errlen);
/* Row-by-row check that new columns equal up(old); reports to out. */
int engine_verify(struct engine *e, FILE *out, char *err, size_t errlen);
/* Sets the backfill pause switch of the migration in progress. */
int engine_set_paused(struct engine *e, int paused, char *err, size_t errlen);
/* Checksums of applied migrations, for lint: name -> checksum, status, parent. */
int engine_applied(struct engine *e, json_t **out, char *err, size_t errlen);
/* applied's entry for name (a row recorded under the name cut to 40
 * characters by releases before names were kept whole counts too). */
json_t *engine_applied_entry(json_t *applied, const char *name);
/* The revisions in the database's alembic_version (an empty array when it
 * has no such table), for lint of an Alembic directory. */
int engine_alembic_versions(struct engine *e, json_t **out, char *err, size_t errlen);

/* ---- the blocking step driver (engine_steps.c), what engine.c and
 * engine_post.c run their step lists with ---- */

/* Sleeps ms, in slices: -1 as soon as the engine is stopped, else 0. */
int engine_nap(const struct engine *e, long ms);

/* Another session's hold of the migration's own lock (its pid), 0 when
 * none, -1 when it could not be read. */
int engine_migration_lock_holder(PGconn *conn, const char *name, char *err, size_t errlen);

/* Waits for the engine lock this engine let go (for as long as another
 * engine's start, complete or validations hold it: seconds); -1 when
 * stopped first. `what` names the wait in the log. */
int engine_retake_lock(struct engine *e, const char *what);

/* engine_chain_wait.c: the waits of a migration built on others in flight
 * on one of its tables (--db), both polling the table of record with the
 * engine lock let go so the migrations below can end.
 * Before `name`'s backfill: until no migration below it on one of its
 * tables is still backfilling. ENGINE_OK, or ENGINE_FAILED with err (one
 * below failed and no engine runs it again, this engine holds the lock
 * they need, stopped). */
int engine_wait_for_backfills_below(struct engine *e, const char *name, char *err, size_t errlen);

/* Before m's start: until no migration at or below its parent is still
 * backfilling a table m indexes; the engine lock is let go meanwhile and
 * taken again. ENGINE_OK, or ENGINE_FAILED with err. */
int engine_wait_to_index(struct engine *e, const struct migration *m, char *err, size_t errlen);
/* Runs what the machine says until it is done (ENGINE_OK) or failed
 * (ENGINE_FAILED, its error in err; the machine's sqlstate in sr). */
int engine_drive(struct engine *e, struct step_run *sr, char *err, size_t errlen);
/* The list l grouped as said, tail_sql joining its last transaction (may
 * be NULL), with the engine's lock_timeout, attempts and backoff; rep (may
 * be NULL) gets the attempts and the lock wait. */
int engine_run_list(struct engine *e, const struct mig_steps *l, enum step_grouping grouping, const char *tail_sql,
                    struct engine_contract_report *rep, char *err, size_t errlen);
/* The same, lock_sql (may be NULL) run first in each shared transaction
 * (expand_locks.h). */
int engine_run_list_locked(struct engine *e, const struct mig_steps *l, enum step_grouping grouping,
                           const char *tail_sql, const char *lock_sql, struct engine_contract_report *rep, char *err,
                           size_t errlen);
/* The migration's error column, for whoever reads its status. */
void engine_record_error(PGconn *conn, const char *name, const char *error);

#endif

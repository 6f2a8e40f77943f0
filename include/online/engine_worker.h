/* The engine's blocking steps, run inside the proxy: expand, finishing the
 * backfill (its validations), the checks before a cutover, a failed batch's
 * diagnosis and rollback are the same engine calls the CLI makes (engine.h),
 * run on one worker thread with its own database connection, so the event
 * loop never waits on them. No child process, no file, no credentials
 * anywhere but in this process's memory.
 *
 * One job at a time. The thread touches nothing of the proxy: it gets
 * copies of what it needs, and its outcome (exit status and message) comes
 * back to the loop through a pipe, where the done callback runs. */
#ifndef PGTANDEM_ENGINE_WORKER_H
#define PGTANDEM_ENGINE_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "compiler.h"
#include "engine.h"

struct event_base;
struct event;

enum engine_job {
    ENGINE_JOB_EXPAND,   /* parse body, validate, expand; the backfill stays for the loop. With no
                          * body, the expand in the table (status expanding, its engine gone) is
                          * undone and redone, as `migrate resume` does */
    ENGINE_JOB_FINISH,   /* resume: the backfill is done; run the validations, status active */
    ENGINE_JOB_DIAGNOSE, /* the batch of one range again (engine_worker_set_range): a failing one names its row */
    ENGINE_JOB_CHECK,    /* the checks that precede the cutover, traffic flowing */
    ENGINE_JOB_ROLLBACK, /* body: the migration's name (engine_rollback) */
    ENGINE_JOB_POST      /* the steps after a contract a completed migration left (engine_finish_post) */
};

/* status: ENGINE_OK, ENGINE_FAILED or ENGINE_INVALID; why: the engine's
 * message when it failed ("" otherwise). */
typedef void (*engine_worker_done_fn)(void *ctx, int status, const char *why);

struct engine_worker {
    struct event_base *base;
    struct event *wake;         /* the read end of the pipe: the job ended */
    int pipe_fd[2];
    pthread_t thread;
    int running;                /* a thread was started and not yet joined */
    enum engine_job job;
    char *db_uri;               /* copies, owned while a job runs */
    char *body;
    size_t body_len;
    char *range_schema, *range_table;   /* DIAGNOSE: the range whose batch failed */
    int range_no;
    int lock_lent;              /* the job runs under the engine lock its caller holds (engine_worker_lend_lock) */
    char target[128];           /* the migration the steps act on (engine_worker_set_target) */
    char job_target[128];       /* its copy for the job that runs */
    atomic_int stop;
    pthread_mutex_t lock;       /* guards cancel */
    PGcancel *cancel;           /* the job's connection, once open */
    struct event *recancel;     /* a stop repeats its cancel until the job ends */
    int status;
    char why[2048];
    engine_worker_done_fn done;
    void *ctx;
};

PGT_MUSTCHECK int engine_worker_init(struct engine_worker *w, struct event_base *base);
/* Starts job on its own connection to db_uri; body is the migration
 * (EXPAND only; NULL: redo the one in the table). Returns -1 (why set)
 * when it cannot start; done is not called then. */
PGT_MUSTCHECK int engine_worker_run(struct engine_worker *w, enum engine_job job, const char *db_uri,
                                    const char *body, size_t len, engine_worker_done_fn done, void *ctx);
int engine_worker_running(const struct engine_worker *w);
/* The migration the jobs act on, by name ("" for the one in flight):
 * with several in flight, the runner's own. Taken when a job starts. */
void engine_worker_set_target(struct engine_worker *w, const char *name);
/* The range a DIAGNOSE job runs a batch of (copied; kept until the job
 * ends). Returns -1 (why set) when out of memory. */
PGT_MUSTCHECK int engine_worker_set_range(struct engine_worker *w, const char *schema, const char *table,
                                          int range_no);
/* The next job runs under the engine lock the caller's own connection
 * holds, instead of taking it: the caller keeps holding it until done has
 * been called, then lets go. */
void engine_worker_lend_lock(struct engine_worker *w);
/* Asks the running job to stop: it gives up between statements, and the
 * statement it waits on is cancelled. done is still called when it ends. */
void engine_worker_stop(struct engine_worker *w);
/* Stops a running job, waits for its thread, frees. */
void engine_worker_free(struct engine_worker *w);

#endif

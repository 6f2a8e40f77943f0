/* The engine's blocking steps on a worker thread (see engine_worker.h).
 *
 * Why a thread and not the loop: validation reads the catalog and checks
 * expressions with many short queries, the expand waits on locks with
 * retries, a rollback runs step after step. The same code serves the CLI,
 * written once as plain sequential libpq calls; the proxy runs it beside
 * the loop instead of rewriting it as callbacks. The loop keeps the work
 * that must interleave with traffic: backfill batches and the cutover. */
#include "engine_worker.h"

#include <assert.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "migration.h"
#include "sql_load.h"

/* The proxy's own engine connection may have held the engine lock a moment
 * ago; its backend lets go when it has exited. */
#define WORKER_LOCK_WAIT_MS 3000
#define RECANCEL_MS 500

static const char *const job_names[] = {"expand", "finish the backfill", "diagnose a batch",
                                        "check before the cutover", "roll back",
                                        "run the steps after the contract"};

static void publish_cancel(struct engine_worker *w, PGconn *conn)
{
    pthread_mutex_lock(&w->lock);
    if (w->cancel)
        PQfreeCancel(w->cancel);
    w->cancel = conn ? PQgetCancel(conn) : NULL;
    pthread_mutex_unlock(&w->lock);
}

/* The body is one migration, or a chain whose pending ones run as one. */
static int expand_from_body(struct engine_worker *w, struct engine *e, char *err, size_t errlen)
{
    struct migration *list;
    size_t n;
    /* .sql files as they were sent: converted here, where the catalog gives old types */
    int chain = sql_load_body_chain(w->body, w->body_len, e->conn, &list, &n, err, errlen);
    if (chain < 0)
        return ENGINE_INVALID;
    if (chain > 0) {
        int rc = engine_start_chain(e, list, n, err, errlen);
        mig_free_list(list, n);
        return rc;
    }
    struct migration m;
    if (sql_load_body_migration(w->body, w->body_len, e->conn, &m, err, errlen) != 0)
        return ENGINE_INVALID;
    int rc = engine_start(e, &m, err, errlen);
    mig_free(&m);
    return rc;
}

static int run_job(struct engine_worker *w, char *err, size_t errlen)
{
    struct engine_options o;
    engine_default_options(&o);
    o.stop = &w->stop;
    o.lock_wait_ms = WORKER_LOCK_WAIT_MS;
    o.skip_backfill = w->job == ENGINE_JOB_EXPAND;     /* the loop runs the batches */
    o.validate_only = w->job == ENGINE_JOB_CHECK;      /* the cutover is the loop's */
    o.alone = 1;                                       /* the runner runs one migration of its own */
    o.target = w->job_target[0] ? w->job_target : NULL; /* that one, with others in flight beside it */
    struct engine e;
    int rc = engine_open(&e, w->db_uri, &o, w->lock_lent ? ENGINE_LOCK_LENT : ENGINE_LOCK_TAKE, err, errlen);
    if (rc == ENGINE_OK) {
        publish_cancel(w, e.conn);
        if (engine_stopped(&e))
            rc = ENGINE_FAILED, snprintf(err, errlen, "stopped");
        else if (w->job == ENGINE_JOB_EXPAND && w->body)
            rc = expand_from_body(w, &e, err, errlen);
        else if (w->job == ENGINE_JOB_EXPAND) /* an expand its engine left: undone and redone */
            rc = engine_resume(&e, err, errlen);
        else if (w->job == ENGINE_JOB_ROLLBACK)
            rc = engine_rollback(&e, w->body, err, errlen); /* body: the migration's name */
        else if (w->job == ENGINE_JOB_POST)
            rc = engine_finish_post(&e, err, errlen);
        else if (w->job == ENGINE_JOB_DIAGNOSE)
            rc = engine_retry_batch(&e, w->range_schema, w->range_table, w->range_no, err, errlen);
        else if (w->job == ENGINE_JOB_CHECK) {
            struct engine_contract_report rep;
            rc = engine_complete(&e, &rep, err, errlen);
        } else
            rc = engine_resume(&e, err, errlen);
        publish_cancel(w, NULL);
    }
    engine_close(&e);
    return rc;
}

static void *worker_main(void *arg)
{
    struct engine_worker *w = arg;
    /* Signals are the loop's (libevent's handlers, SIGPIPE ignored). */
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    char err[sizeof w->why];
    err[0] = '\0';
    w->status = run_job(w, err, sizeof err);
    snprintf(w->why, sizeof w->why, "%s", w->status == ENGINE_OK ? "" : err[0] ? err : "the engine step failed");
    char one = 1;
    while (write(w->pipe_fd[1], &one, 1) < 0 && errno == EINTR) {
    }
    return NULL;
}

static void release_job(struct engine_worker *w)
{
    free(w->db_uri);
    free(w->body);
    free(w->range_schema);
    free(w->range_table);
    w->db_uri = w->body = w->range_schema = w->range_table = NULL;
    w->body_len = 0;
    w->lock_lent = 0;
}

int engine_worker_set_range(struct engine_worker *w, const char *schema, const char *table, int range_no)
{
    assert(!w->running);
    free(w->range_schema);
    free(w->range_table);
    w->range_schema = strdup(schema);
    w->range_table = strdup(table);
    w->range_no = range_no;
    if (w->range_schema && w->range_table)
        return 0;
    snprintf(w->why, sizeof w->why, "out of memory");
    return -1;
}

static void job_ended(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct engine_worker *w = arg;
    char buf[8];
    while (read(fd, buf, sizeof buf) < 0 && errno == EINTR) {
    }
    if (!w->running)
        return;
    pthread_join(w->thread, NULL);
    w->running = 0;
    evtimer_del(w->recancel);
    release_job(w);
    engine_worker_done_fn done = w->done;
    w->done = NULL;
    if (done)
        done(w->ctx, w->status, w->why);
}

static void send_cancel(struct engine_worker *w)
{
    char ignored[256];
    pthread_mutex_lock(&w->lock);
    if (w->cancel)
        PQcancel(w->cancel, ignored, sizeof ignored);
    pthread_mutex_unlock(&w->lock);
}

static void recancel_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct engine_worker *w = arg;
    if (!w->running)
        return;
    send_cancel(w); /* the statement it was about to send when the first cancel went */
    struct timeval tv = {0, RECANCEL_MS * 1000};
    if (evtimer_add(w->recancel, &tv) != 0)
        log_warn("engine worker: cannot re-arm the cancel timer");
}

int engine_worker_init(struct engine_worker *w, struct event_base *base)
{
    memset(w, 0, sizeof *w);
    w->base = base;
    w->pipe_fd[0] = w->pipe_fd[1] = -1;
    pthread_mutex_init(&w->lock, NULL);
    if (pipe2(w->pipe_fd, O_CLOEXEC | O_NONBLOCK) != 0)
        return -1;
    w->wake = event_new(base, w->pipe_fd[0], EV_READ | EV_PERSIST, job_ended, w);
    w->recancel = evtimer_new(base, recancel_cb, w);
    if (!w->wake || !w->recancel || event_add(w->wake, NULL) != 0)
        return -1;
    return 0;
}

int engine_worker_run(struct engine_worker *w, enum engine_job job, const char *db_uri, const char *body,
                      size_t len, engine_worker_done_fn done, void *ctx)
{
    assert(!w->running);
    w->job = job;
    w->db_uri = strdup(db_uri);
    w->body = body ? malloc(len + 1) : NULL;
    if (!w->db_uri || (body && !w->body)) {
        release_job(w);
        snprintf(w->why, sizeof w->why, "out of memory");
        return -1;
    }
    if (body) {
        memcpy(w->body, body, len);
        w->body[len] = '\0';
        w->body_len = len;
    }
    atomic_store(&w->stop, 0);
    snprintf(w->job_target, sizeof w->job_target, "%s", w->target);
    w->status = ENGINE_FAILED;
    w->why[0] = '\0';
    w->done = done;
    w->ctx = ctx;
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc != 0) {
        release_job(w);
        w->done = NULL;
        snprintf(w->why, sizeof w->why, "cannot start the engine worker: %s", strerror(rc));
        return -1;
    }
    w->running = 1;
    log_debug("engine worker: %s", job_names[job]);
    return 0;
}

void engine_worker_set_target(struct engine_worker *w, const char *name)
{
    snprintf(w->target, sizeof w->target, "%s", name ? name : "");
}

int engine_worker_running(const struct engine_worker *w)
{
    return w->running;
}

void engine_worker_lend_lock(struct engine_worker *w)
{
    assert(!w->running);
    w->lock_lent = 1;
}

void engine_worker_stop(struct engine_worker *w)
{
    if (!w->running)
        return;
    atomic_store(&w->stop, 1);
    recancel_cb(-1, 0, w);
}

void engine_worker_free(struct engine_worker *w)
{
    if (w->running) {
        atomic_store(&w->stop, 1);
        send_cancel(w);
        pthread_join(w->thread, NULL); /* it gives up within a statement and a connect timeout */
        w->running = 0;
    }
    release_job(w);
    w->done = NULL;
    if (w->wake)
        event_free(w->wake);
    if (w->recancel)
        event_free(w->recancel);
    w->wake = w->recancel = NULL;
    for (int i = 0; i < 2; i++)
        if (w->pipe_fd[i] >= 0)
            close(w->pipe_fd[i]);
    w->pipe_fd[0] = w->pipe_fd[1] = -1;
    publish_cancel(w, NULL);
    pthread_mutex_destroy(&w->lock);
}

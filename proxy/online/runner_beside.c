/* Starts beside the migration in flight: a `POST /migrations` while this
 * proxy's engine runs (or follows) another migration starts the new one as
 * `pgtandem migrate start FILE --db` would, on a thread of its own with an
 * engine of its own: the admission beside the ones in flight (built on
 * one's shape, or on other tables), the wait until every proxy serving the
 * database routes it, the expand, the backfill. The runner goes on with
 * its own migration, and routes the new one from the fleet's looks like
 * any other in flight; once the runner's own completes, it follows the
 * next oldest, taking over its backfill if this thread is gone.
 *
 * Why a thread and not the worker: the worker runs the runner's own
 * steps, one at a time, and a start beside may wait (for the engine lock
 * while the runner's backfill holds it, for the backfill of the migration
 * it builds on) and then backfill for hours. Each thread touches only its
 * own record; the loop reads a record's outcome under its lock and joins
 * a thread once it has ended. */
#include "runner_internal.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backfill_drive.h"
#include "engine.h"
#include "log.h"
#include "sql_load.h"

/* The engine lock is held by the runner's own backfill (and by any
 * `pgtandem migrate` for its expand or complete): a start beside waits
 * for it as long as an operator would let a --db start wait. */
#define BESIDE_LOCK_WAIT_MS (30L * 60 * 1000)
#define BESIDE_KEPT 16 /* ended starts kept for status */

enum beside_state { BESIDE_RUNNING, BESIDE_STARTED, BESIDE_FAILED, BESIDE_REFUSED };

static const char *const state_words[] = {"running", "started", "failed", "refused"};

struct beside {
    struct beside *next;
    pthread_t thread;
    int joined;
    char name[128];
    char *body;
    size_t body_len;
    char *db_uri;
    struct backfill_pace *pace;  /* the runner's, which outlives the thread (beside_stop_all joins it) */
    atomic_int stop;
    pthread_mutex_t lock;       /* guards state and error */
    enum beside_state state;
    char error[1024];
};

static void set_outcome(struct beside *b, enum beside_state st, const char *error)
{
    pthread_mutex_lock(&b->lock);
    b->state = st;
    snprintf(b->error, sizeof b->error, "%s", error ? error : "");
    pthread_mutex_unlock(&b->lock);
}

static enum beside_state outcome(struct beside *b, char *error, size_t cap)
{
    pthread_mutex_lock(&b->lock);
    enum beside_state st = b->state;
    if (error)
        snprintf(error, cap, "%s", b->error);
    pthread_mutex_unlock(&b->lock);
    return st;
}

static void *beside_main(void *arg)
{
    struct beside *b = arg;
    /* Signals are the loop's (libevent's handlers, SIGPIPE ignored), as on the worker. */
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    char err[1024] = "";
    struct engine_options o;
    engine_default_options(&o);
    o.stop = &b->stop;
    o.lock_wait_ms = BESIDE_LOCK_WAIT_MS;
    o.pace = b->pace;
    struct engine e;
    int rc = engine_open(&e, b->db_uri, &o, ENGINE_LOCK_TAKE, err, sizeof err);
    if (rc == ENGINE_OK) {
        struct migration m;
        if (sql_load_body_migration(b->body, b->body_len, e.conn, &m, err, sizeof err) != 0) {
            rc = ENGINE_INVALID;
        } else {
            rc = engine_start(&e, &m, err, sizeof err);
            mig_free(&m);
        }
    }
    engine_close(&e);
    if (rc == ENGINE_OK)
        log_info("migration %s, started beside the one in flight, is active", b->name);
    else
        log_error("migration %s, started beside the one in flight: %s", b->name, err);
    set_outcome(b, rc == ENGINE_OK ? BESIDE_STARTED : rc == ENGINE_INVALID ? BESIDE_REFUSED : BESIDE_FAILED,
                rc == ENGINE_OK ? NULL : err);
    return NULL;
}

static void beside_free(struct beside *b)
{
    if (!b->joined)
        pthread_join(b->thread, NULL);
    pthread_mutex_destroy(&b->lock);
    free(b->body);
    free(b->db_uri);
    free(b);
}

/* Joins the threads that ended and keeps the newest BESIDE_KEPT records. */
static void reap(struct migration_runner *r)
{
    size_t kept = 0;
    for (struct beside **p = &r->beside; *p;) {
        struct beside *b = *p;
        enum beside_state st = outcome(b, NULL, 0);
        if (st != BESIDE_RUNNING && !b->joined) {
            pthread_join(b->thread, NULL);
            b->joined = 1;
        }
        if (st != BESIDE_RUNNING && ++kept > BESIDE_KEPT) {
            *p = b->next;
            beside_free(b);
            continue;
        }
        p = &b->next;
    }
}

static struct beside *find_running(const struct migration_runner *r, const char *name)
{
    for (struct beside *b = r->beside; b; b = b->next)
        if (!strcmp(b->name, name) && outcome(b, NULL, 0) == BESIDE_RUNNING)
            return b;
    return NULL;
}

int beside_start(struct migration_runner *r, const char *body, size_t len, char *name, size_t namecap,
                 char *err, size_t errlen)
{
    reap(r);
    struct migration m;
    struct migration *chain = NULL;
    size_t n = 0;
    int is_chain = sql_load_body_chain(body, len, NULL, &chain, &n, err, errlen);
    mig_free_list(chain, n);
    if (is_chain < 0)
        return 400;
    if (is_chain)
        return snprintf(err, errlen, "a directory starts through this proxy when no migration is in flight (its "
                        "pending files as one); beside %s, start its files one by one, each its own migration",
                        r->name ? r->name : "the one in flight"), 409;
    if (sql_load_body_migration(body, len, NULL, &m, err, errlen) != 0)
        return 400;
    snprintf(name, namecap, "%s", m.name);
    mig_free(&m);
    if (r->name && !strcmp(r->name, name))
        return snprintf(err, errlen, "migration %s is %s on this proxy already", name, mig_phase_word(r->phase)), 409;
    if (find_running(r, name))
        return snprintf(err, errlen, "migration %s is being started beside the one in flight already", name), 409;
    struct beside *b = calloc(1, sizeof *b);
    if (b) {
        b->body = malloc(len ? len : 1);
        b->db_uri = strdup(r->engine_db);
    }
    if (!b || !b->body || !b->db_uri) {
        if (b) {
            free(b->body);
            free(b->db_uri);
        }
        free(b);
        return snprintf(err, errlen, "out of memory"), 500;
    }
    memcpy(b->body, body, len);
    b->body_len = len;
    snprintf(b->name, sizeof b->name, "%s", name);
    b->pace = beside_budget_pace(r, name);
    atomic_init(&b->stop, 0);
    pthread_mutex_init(&b->lock, NULL);
    b->state = BESIDE_RUNNING;
    if (pthread_create(&b->thread, NULL, beside_main, b) != 0) {
        b->joined = 1;
        beside_free(b);
        return snprintf(err, errlen, "cannot start a thread for migration %s", name), 503;
    }
    log_info("migration %s: started beside %s, which this proxy's engine %s; it runs on an engine of its own here, "
             "as `migrate start --db` would", name, r->name ? r->name : "the one in flight",
             r->following ? "follows" : "runs");
    b->next = r->beside;
    r->beside = b;
    return 202;
}

int beside_running(const struct migration_runner *r, const char *name)
{
    return name && find_running(r, name) != NULL;
}

json_t *beside_json(struct migration_runner *r)
{
    reap(r);
    json_t *out = json_array();
    for (struct beside *b = r->beside; b && out; b = b->next) {
        char error[sizeof b->error];
        enum beside_state st = outcome(b, error, sizeof error);
        json_array_append_new(out, json_pack("{s:s,s:s,s:s?}", "name", b->name, "state", state_words[st], "error",
                                             error[0] ? error : NULL));
    }
    return out;
}

void beside_stop_all(struct migration_runner *r)
{
    for (struct beside *b = r->beside; b; b = b->next)
        atomic_store(&b->stop, 1);
    while (r->beside) {
        struct beside *b = r->beside;
        r->beside = b->next;
        if (outcome(b, NULL, 0) == BESIDE_RUNNING)
            log_info("migration %s, started beside: stopping its engine (the next engine resumes it)", b->name);
        beside_free(b);
    }
    beside_budget_free(r);
}

/* The fleet's own connection (fleet_internal.h): connecting, setting it
 * up (the schema, LISTEN) and registering this proxy, the queue of jobs
 * that wait for it, and the connection lost. One statement is in flight
 * at a time; what waits is a flag, and pump() sends the most urgent one
 * (releases before acknowledgements before the heartbeat), so a hold never
 * waits behind bookkeeping. Who sends each job, and who hears that the
 * connection is gone, is set from above (fleet.c): nothing here calls a
 * part above it. */
#include "fleet_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fleet_direct.h"
#include "fleet_sql.h"
#include "log.h"
#include "migration_lifecycle.h"
#include "migration_state.h"
#include "relay_control.h"
#include "version.h"

#define RECONNECT_MS 500

static void pump(struct fleet *f);

/* ---- small helpers ---- */

uint64_t fleet_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* A timer that cannot be set fires at once: every timer here bounds a
 * wait (a lease, a hold, a reconnect), and ending a wait early is safe
 * where waiting forever is not. */
void fleet_add_timer(struct event *ev, long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    if (evtimer_add(ev, &tv) != 0) {
        log_error("fleet: could not set a %ld ms timer; it fires now", ms);
        event_active(ev, EV_TIMEOUT, 0);
    }
}

void fleet_want(struct fleet *f, enum fleet_job job)
{
    f->jobs |= 1u << job;
    pump(f);
}

char *fleet_pids_text(const struct fleet *f)
{
    json_t *pids = relay_backend_pids(f->relay);
    char *text = json_dumps(pids, JSON_COMPACT);
    json_decref(pids);
    return text;
}

/* ---- the connection ---- */

/* Every statement's answer goes to its handler, then the next job goes out. */
static void on_answer(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    struct fleet *f = ctx;
    pgasync_done_fn handler = f->handler;
    f->handler = NULL;
    if (handler)
        handler(f, res, error, sqlstate);
    pump(f);
}

int fleet_send_sql(struct fleet *f, const char *sql, int n, const char *const *values, pgasync_done_fn handler)
{
    f->handler = handler;
    return pgasync_send(&f->db, sql, n, values, on_answer, f);
}

/* ---- reads for the parts outside the fleet (fleet.h: fleet_read) ---- */

static void read_clear(struct fleet_read *q)
{
    free(q->sql);
    for (int i = 0; i < q->n; i++)
        free(q->values[i]);
    memset(q, 0, sizeof *q);
}

/* Ends a read with an error, the caller told last (it may ask again). */
static void read_fail(struct fleet_read *q, const char *why)
{
    if (!q->sql)
        return;
    pgasync_done_fn done = q->done;
    void *ctx = q->ctx;
    read_clear(q);
    if (done)
        done(ctx, NULL, why, "08006");
}

/* The index of the read queued for this caller, -1: none. */
static int queued_read(const struct fleet *f, pgasync_done_fn done, const void *ctx)
{
    for (int i = 0; i < f->nreads; i++)
        if (f->read_waiting[i].done == done && f->read_waiting[i].ctx == ctx)
            return i;
    return -1;
}

int fleet_read(struct fleet *f, const char *sql, int n, const char *const *values, pgasync_done_fn done, void *ctx)
{
    if (f->link != FLEET_LINK_UP || n < 0 || n > FLEET_READ_VALUES)
        return -1;
    int at = queued_read(f, done, ctx);
    if (at < 0 && f->nreads == FLEET_READERS)
        return -1;
    struct fleet_read q = {.sql = strdup(sql), .n = n, .done = done, .ctx = ctx};
    int ok = q.sql != NULL;
    for (int i = 0; i < n; i++) {
        q.values[i] = strdup(values[i] ? values[i] : "");
        ok = ok && q.values[i];
    }
    if (!ok) { /* the queue as it was: the caller uses its own connection */
        read_clear(&q);
        return -1;
    }
    int replaced = at >= 0;
    if (!replaced)
        at = f->nreads++;
    read_clear(&f->read_waiting[at]);
    f->read_waiting[at] = q;
    fleet_want(f, FLEET_JOB_READ);
    return replaced;
}

void fleet_tell_news(struct fleet *f, const char *name, const char *status)
{
    snprintf(f->news_name, sizeof f->news_name, "%s", name);
    snprintf(f->news_status, sizeof f->news_status, "%s", status);
    fleet_want(f, FLEET_JOB_NEWS);
}

static void on_news(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    fleet_failed(ctx, "telling the fleet the migration's news", error, sqlstate);
}

int fleet_send_news(struct fleet *f)
{
    return fleet_send_sql(f, FLEET_NEWS_SQL, 2, (const char *[]){f->news_name, f->news_status}, on_news);
}

static void on_read(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    struct fleet *f = ctx;
    struct fleet_read q = f->read_sent;
    memset(&f->read_sent, 0, sizeof f->read_sent);
    if (f->nreads > 0)
        f->jobs |= 1u << FLEET_JOB_READ; /* the next reader's, once the queue goes on */
    if (q.done)
        q.done(q.ctx, res, error, sqlstate);
    read_clear(&q);
}

/* The oldest queued read, taken off the queue (the queue is not empty). */
static struct fleet_read read_pop(struct fleet *f)
{
    struct fleet_read q = f->read_waiting[0];
    memmove(&f->read_waiting[0], &f->read_waiting[1], (size_t)(f->nreads - 1) * sizeof f->read_waiting[0]);
    f->nreads--;
    memset(&f->read_waiting[f->nreads], 0, sizeof f->read_waiting[f->nreads]);
    return q;
}

/* The oldest queued read goes out. */
int fleet_send_read(struct fleet *f)
{
    if (f->nreads == 0) /* taken back (a lost connection) */
        return fleet_send_sql(f, "SELECT 1", 0, NULL, on_read);
    read_clear(&f->read_sent);
    f->read_sent = read_pop(f);
    return fleet_send_sql(f, f->read_sent.sql, f->read_sent.n, (const char *const *)f->read_sent.values, on_read);
}

void fleet_reads_free(struct fleet *f)
{
    for (int i = 0; i < f->nreads; i++)
        read_clear(&f->read_waiting[i]);
    f->nreads = 0;
    read_clear(&f->read_sent);
}

/* Every read queued or in flight ends with an error (the connection is gone). */
static void reads_fail(struct fleet *f, const char *why)
{
    read_fail(&f->read_sent, why);
    while (f->nreads > 0) {
        struct fleet_read q = read_pop(f);
        read_fail(&q, why);
    }
}

void fleet_reconnect_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    fleet_connect(arg);
}

/* Until the proxy is registered, any error means starting over. */
static int setup_failed(struct fleet *f, const char *error)
{
    if (error)
        fleet_link_lost(f, error);
    return error != NULL;
}

static void on_registered(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)sqlstate;
    struct fleet *f = ctx;
    if (!error && (!res || PQntuples(res) != 1))
        error = "registering in pgtandem.proxies returned no row";
    if (setup_failed(f, error))
        return;
    int slot = atoi(PQgetvalue(res, 0, 0));
    if (slot < 1 || slot > FLEET_MAX_SLOT)
        log_warn("fleet: no free slot (more than %d live proxies); cancel requests are not forwarded to this one",
                 FLEET_MAX_SLOT);
    f->slot = slot;
    relay_set_fleet_slot(f->relay, slot >= 1 && slot <= FLEET_MAX_SLOT ? slot : 0);
    f->link = FLEET_LINK_UP;
    f->reconnects = 0;
    log_info("fleet: registered as %s (slot %d, lease %d ms)", f->id, f->slot, f->lease_ms);
    f->jobs |= 1u << FLEET_JOB_LEASE;
    fleet_want(f, FLEET_JOB_HEARTBEAT);
}

void fleet_register(struct fleet *f)
{
    char pid[16], lease[16];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    snprintf(lease, sizeof lease, "%d", f->lease_ms);
    const char *values[9] = {f->id, f->host, f->listen, f->admin, PGTANDEM_VERSION, pid, lease,
                             relay_peer_address(f->relay), f->direct ? fleet_direct_key(f->direct) : ""};
    f->link = FLEET_LINK_REGISTERING;
    if (fleet_send_sql(f, FLEET_REGISTER_SQL, 9, values, on_registered) != 0)
        fleet_link_lost(f, f->db.error);
}

static void on_setup(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    (void)sqlstate;
    if (!setup_failed(ctx, error))
        fleet_register(ctx);
}

static void on_connected(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    (void)sqlstate;
    struct fleet *f = ctx;
    if (setup_failed(f, error))
        return;
    char *schema = mig_state_schema_sql();
    size_t n = schema ? strlen(schema) + strlen(FLEET_SETUP_SQL_TAIL) + 1 : 0;
    char *sql = schema ? malloc(n) : NULL;
    if (sql)
        snprintf(sql, n, "%s%s", schema, FLEET_SETUP_SQL_TAIL);
    free(schema);
    f->link = FLEET_LINK_SETUP;
    int rc = sql ? fleet_send_sql(f, sql, 0, NULL, on_setup) : -1;
    free(sql);
    if (rc != 0)
        fleet_link_lost(f, sql ? f->db.error : "out of memory");
}

void fleet_connect(struct fleet *f)
{
    pgasync_close(&f->db);
    f->link = FLEET_LINK_CONNECTING;
    if (pgasync_connect(&f->db, f->engine_db, on_connected, f) != 0)
        fleet_link_lost(f, f->db.error);
}

/* Whatever waited on the connection learns it is gone (on_link_lost); it
 * comes back by itself. */
void fleet_link_lost(struct fleet *f, const char *why)
{
    if (f->link != FLEET_LINK_DOWN && f->reconnects == 0) /* once per outage, not per retry */
        log_warn("fleet: connection to the database lost (%s); reconnecting", why ? why : "?");
    char fence_why[192];
    snprintf(fence_why, sizeof fence_why, "the fleet's connection to the database is down: %s", why ? why : "?");
    relay_set_fence_why(f->relay, fence_why);
    pgasync_close(&f->db);
    f->link = FLEET_LINK_DOWN;
    f->jobs &= ~((1u << FLEET_JOB_ACK_CHECK) | (1u << FLEET_JOB_HOLD) | (1u << FLEET_JOB_LEASE) |
                 (1u << FLEET_JOB_HEARTBEAT) | (1u << FLEET_JOB_READ));
    reads_fail(f, "the fleet's connection to the database was lost");
    if (f->on_link_lost)
        f->on_link_lost(f);
    /* With a migration in progress the relay stays fenced until the link is
     * back, and once the fence outlasts its bound every client is refused:
     * retry as often as the heartbeat runs, so that a database that returns
     * (a compute restarted behind Neon's proxy) is served within a heartbeat
     * rather than after a backoff of seconds. */
    long delay = RECONNECT_MS << (f->reconnects < 3 ? f->reconnects : 3);
    if (f->migration[0] && mig_word_in_progress(f->status) && delay > f->heartbeat_ms)
        delay = f->heartbeat_ms;
    f->reconnects++;
    fleet_add_timer(f->reconnect_timer, delay);
}

/* A statement failed: a lost connection is handled as such, anything else
 * is logged and the connection goes on. */
int fleet_failed(struct fleet *f, const char *what, const char *error, const char *sqlstate)
{
    if (!error)
        return 0;
    if (!pgasync_ready(&f->db) || (sqlstate && (!strncmp(sqlstate, "08", 2) || !strncmp(sqlstate, "57P", 3))))
        fleet_link_lost(f, error);
    else
        log_warn("fleet: %s: %s", what, error);
    return 1;
}

/* ---- the queue ---- */

/* A job's statement goes out through its sender (fleet.c's table); one
 * that cannot be sent means the connection is gone. */
static void send_job(struct fleet *f, enum fleet_job job)
{
    fleet_send_fn send = f->senders ? f->senders[job] : NULL;
    if (send && send(f) != 0)
        fleet_link_lost(f, f->db.error);
}

static void pump(struct fleet *f)
{
    if (f->link != FLEET_LINK_UP || f->db.busy)
        return;
    if (!pgasync_ready(&f->db)) { /* closed while idle (a restart): reconnect */
        fleet_link_lost(f, "the connection closed while idle");
        return;
    }
    for (int job = 0; job < FLEET_NJOBS; job++)
        if (f->jobs & (1u << job)) {
            f->jobs &= ~(1u << job);
            send_job(f, (enum fleet_job)job);
            return;
        }
}


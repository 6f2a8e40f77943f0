/* Event-loop-driven libpq (see pgasync.h). libpq may swap sockets
 * while connecting, so the watched event is recreated whenever the socket
 * or the direction changes. libpq also closes its socket by itself when
 * the connection breaks; the event on that descriptor is dropped right
 * after every libpq call that may have done so (forget_dead_socket), before
 * the loop can hand the number to a new client socket or a child's pipe. */
#include "pgasync.h"

#include <event2/event.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "compiler.h"
#include "log.h"

/* Bookkeeping statements answer in milliseconds; a few seconds without an
 * answer is a dead path (a suspended compute, a NAT that dropped the flow)
 * long before TCP would say so. statement_timeout fires first when the
 * path is alive but the statement is slow or blocked, so the server's own
 * error names it. */
#define DEFAULT_WATCHDOG_MS 5000
#define DEFAULT_PG_OPTIONS "-c statement_timeout=4000 -c lock_timeout=2000"

static void on_socket(evutil_socket_t fd, short what, void *arg);

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* ---- connection parameters ---- */

/* Dead peers are found in seconds instead of the kernel's two hours of
 * keepalive silence or fifteen minutes of retransmissions: idle 5 s, then
 * 3 probes 2 s apart (11 s); unacknowledged data for 10 s. Connecting has
 * 5 s per address. */
static const char *const tcp_defaults[][2] = {
    {"connect_timeout", "5"},     {"keepalives", "1"},        {"keepalives_idle", "5"},
    {"keepalives_interval", "2"}, {"keepalives_count", "3"}, {"tcp_user_timeout", "10000"},
};

static int user_set(const PQconninfoOption *o)
{
    const char *env = o->envvar ? getenv(o->envvar) : NULL;
    return (o->val && o->val[0]) || (env && env[0]);
}

static const char *tcp_default(const char *key)
{
    for (size_t i = 0; i < sizeof tcp_defaults / sizeof tcp_defaults[0]; i++)
        if (!strcmp(tcp_defaults[i][0], key))
            return tcp_defaults[i][1];
    return NULL;
}

PGconn *pgconn_open(const char *uri, const char *pg_options, const char *app_name, int async)
{
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse(uri, &errmsg);
    if (!opts) { /* let libpq say what is wrong with it */
        PQfreemem(errmsg);
        return async ? PQconnectStart(uri) : PQconnectdb(uri);
    }
    size_t n = 0;
    for (PQconninfoOption *o = opts; o->keyword; o++)
        n++;
    const char **keys = calloc(n + 1, sizeof *keys), **vals = calloc(n + 1, sizeof *vals);
    char *options = NULL;
    size_t k = 0;
    for (PQconninfoOption *o = opts; keys && vals && o->keyword; o++) {
        const char *v = o->val && o->val[0] ? o->val : NULL;
        if (!strcmp(o->keyword, "options") && pg_options && pg_options[0]) {
            const char *mine = v ? v : (o->envvar ? getenv(o->envvar) : NULL);
            size_t len = strlen(pg_options) + (mine ? strlen(mine) : 0) + 2;
            if ((options = malloc(len)))
                snprintf(options, len, "%s%s%s", pg_options, mine ? " " : "", mine ? mine : "");
            v = options;
        } else if (!strcmp(o->keyword, "application_name") && app_name) {
            v = app_name;
        } else if (!user_set(o) && tcp_default(o->keyword)) {
            v = tcp_default(o->keyword);
        }
        if (v) {
            keys[k] = o->keyword;
            vals[k++] = v;
        }
    }
    PGconn *conn = NULL;
    if (keys && vals)
        conn = async ? PQconnectStartParams(keys, vals, 0) : PQconnectdbParams(keys, vals, 0);
    free(keys);
    free(vals);
    free(options);
    PQconninfoFree(opts);
    return conn;
}

/* NOTICEs ("drop cascades to ...") belong in the log, not on stderr raw;
 * those our own SQL raises ("pgtandem: ...", the contract's step timings)
 * at info. */
static void log_notice(void *arg, const char *message)
{
    (void)arg;
    size_t n = strlen(message);
    int len = (int)(n && message[n - 1] == '\n' ? n - 1 : n);
    if (strstr(message, "NOTICE:  pgtandem: ") == message)
        log_info("engine connection: %.*s", len, message);
    else
        log_debug("engine connection: %.*s", len, message);
}

void pgasync_init(struct pgasync *a, struct event_base *base)
{
    memset(a, 0, sizeof *a);
    a->base = base;
    a->ev_fd = -1;
    pgasync_configure(a, "engine", DEFAULT_WATCHDOG_MS, DEFAULT_PG_OPTIONS);
}

void pgasync_configure(struct pgasync *a, const char *label, int watchdog_ms, const char *pg_options)
{
    snprintf(a->label, sizeof a->label, "%s", label);
    snprintf(a->pg_options, sizeof a->pg_options, "%s", pg_options ? pg_options : "");
    a->watchdog_ms = watchdog_ms;
}

void pgasync_set_label(struct pgasync *a, const char *label)
{
    snprintf(a->label, sizeof a->label, "%s", label);
}

static const char *conn_name(const struct pgasync *a)
{
    return a->label;
}

static void unwatch(struct pgasync *a);

/* -1 when the loop cannot watch the socket (out of memory): the caller
 * fails the connection, since nothing would ever wake it up. */
static PGT_MUSTCHECK int watch(struct pgasync *a, short what)
{
    int fd = PQsocket(a->conn);
    if (a->ev && (a->ev_fd != fd || a->ev_what != what)) {
        event_free(a->ev);
        a->ev = NULL;
    }
    if (!a->ev) {
        a->ev = event_new(a->base, fd, what | EV_PERSIST, on_socket, a);
        a->ev_fd = fd;
        a->ev_what = what;
        if (!a->ev || event_add(a->ev, NULL) != 0) {
            log_error("%s connection: could not register its socket with the event loop", conn_name(a));
            unwatch(a);
            return -1;
        }
    }
    return 0;
}

static void unwatch(struct pgasync *a)
{
    if (a->ev)
        event_free(a->ev);
    a->ev = NULL;
    a->ev_fd = -1;
}

/* libpq closed the socket (a broken connection): the event must go before
 * anything else reuses the descriptor number. */
static void forget_dead_socket(struct pgasync *a)
{
    if (a->ev && (!a->conn || PQsocket(a->conn) != a->ev_fd || PQstatus(a->conn) == CONNECTION_BAD))
        unwatch(a);
}

static void disarm(struct pgasync *a)
{
    if (a->watchdog)
        event_free(a->watchdog);
    a->watchdog = NULL;
}

/* The socket, its events and the connection; what was in flight stays
 * for the caller to answer or forget. */
static void drop_connection(struct pgasync *a)
{
    disarm(a);
    unwatch(a);
    PQclear(a->last);
    a->last = NULL;
    if (a->conn)
        PQfinish(a->conn);
    a->conn = NULL;
    a->connecting = 0;
}

static void remember_failure(struct pgasync *a, const char *msg)
{
    snprintf(a->last_error, sizeof a->last_error, "%s", msg);
    size_t n = strlen(a->last_error);
    while (n && (a->last_error[n - 1] == '\n' || a->last_error[n - 1] == ' '))
        a->last_error[--n] = '\0';
    a->last_error_ms = mono_ms();
}

static void finish(struct pgasync *a);
static void set_error(struct pgasync *a, const char *msg, const char *state);

static void became_idle(struct pgasync *a)
{
    if (a->on_idle && !a->busy)
        a->on_idle(a->idle_ctx);
}

/* No answer within the bound: whatever is on the other end is gone or
 * frozen, and waiting for TCP to notice can take minutes. */
static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct pgasync *a = arg;
    char msg[512];
    snprintf(msg, sizeof msg, "%s connection: no answer %s within %d ms; the connection is dropped as dead",
             conn_name(a), a->purpose, a->watchdog_ms);
    if (a->connecting)
        log_info("%s", msg); /* the owner reports the outage, once */
    else
        log_warn("%s", msg);
    a->drops++;
    remember_failure(a, msg);
    drop_connection(a);
    set_error(a, msg, "08006");
    finish(a); /* the statement in flight gets the error */
}

/* "to `UPDATE pgtandem.proxies SET ...`": the statement's first words on
 * one line, enough to tell which one it was. */
static void describe(struct pgasync *a, const char *sql)
{
    char words[72];
    size_t j = 0;
    int space = 1;
    const char *p = sql;
    for (; *p && j < sizeof words - 1; p++) {
        int ws = *p == ' ' || *p == '\n' || *p == '\t' || *p == '\r';
        if (ws && space)
            continue;
        words[j++] = ws ? ' ' : *p;
        space = ws;
    }
    while (j && words[j - 1] == ' ')
        j--;
    words[j] = '\0';
    snprintf(a->purpose, sizeof a->purpose, "to `%s%s`", words, *p ? "..." : "");
}

/* -1 when the watchdog cannot be set: a statement without it could wait
 * on a frozen server forever, so the caller fails it instead. */
static PGT_MUSTCHECK int arm(struct pgasync *a)
{
    a->sent_ms = mono_ms();
    if (a->watchdog_ms <= 0)
        return 0;
    if (!a->watchdog)
        a->watchdog = evtimer_new(a->base, on_watchdog, a);
    struct timeval tv = {a->watchdog_ms / 1000, (a->watchdog_ms % 1000) * 1000};
    if (!a->watchdog || evtimer_add(a->watchdog, &tv) != 0) {
        log_error("%s connection: could not set its watchdog", conn_name(a));
        return -1;
    }
    return 0;
}

#define UNWATCHABLE "could not register the connection with the event loop"

/* From an event callback: the connection cannot be watched any more, so
 * it is dropped like a dead one and the statement in flight hears so. */
static void fail_unwatchable(struct pgasync *a)
{
    a->connecting = 0;
    remember_failure(a, UNWATCHABLE);
    drop_connection(a);
    set_error(a, UNWATCHABLE, "08006");
    finish(a);
}

/* From a call: nothing was started, the caller hears -1. */
static int refuse_unwatchable(struct pgasync *a)
{
    drop_connection(a);
    a->busy = 0;
    a->done = NULL;
    a->ctx = NULL;
    snprintf(a->error, sizeof a->error, "%s", UNWATCHABLE);
    snprintf(a->sqlstate, sizeof a->sqlstate, "08006");
    remember_failure(a, UNWATCHABLE);
    became_idle(a);
    return -1;
}

static void finish(struct pgasync *a)
{
    if (a->watchdog)
        evtimer_del(a->watchdog);
    pgasync_done_fn done = a->done;
    void *ctx = a->ctx;
    PGresult *last = a->last;
    a->last = NULL;
    a->busy = 0;
    a->done = NULL;
    const char *error = a->error[0] ? a->error : NULL;
    const char *state = a->sqlstate[0] ? a->sqlstate : NULL;
    char error_copy[sizeof a->error], state_copy[6];
    snprintf(error_copy, sizeof error_copy, "%s", error ? error : "");
    snprintf(state_copy, sizeof state_copy, "%s", state ? state : "");
    /* a connection nobody waits for may be freed by its callback: it is
     * not touched after it (one with a waiter lives as long as its owner) */
    int waited_for = a->on_idle != NULL;
    if (done)
        done(ctx, last, error ? error_copy : NULL, state ? state_copy : NULL);
    PQclear(last);
    if (waited_for)
        became_idle(a); /* unless the callback sent the next statement */
}

static void set_error(struct pgasync *a, const char *msg, const char *state)
{
    if (a->error[0])
        return; /* keep the first: later ones are consequences */
    snprintf(a->error, sizeof a->error, "%s", msg);
    size_t n = strlen(a->error);
    while (n && (a->error[n - 1] == '\n' || a->error[n - 1] == ' '))
        a->error[--n] = '\0';
    snprintf(a->sqlstate, sizeof a->sqlstate, "%s", state ? state : "");
}

static void poll_connect(struct pgasync *a)
{
    switch (PQconnectPoll(a->conn)) {
    case PGRES_POLLING_READING:
        if (watch(a, EV_READ) != 0)
            fail_unwatchable(a);
        return;
    case PGRES_POLLING_WRITING:
        if (watch(a, EV_WRITE) != 0)
            fail_unwatchable(a);
        return;
    case PGRES_POLLING_OK:
        a->connecting = 0;
        PQsetnonblocking(a->conn, 1);
        if (watch(a, EV_READ) != 0) {
            fail_unwatchable(a);
            return;
        }
        finish(a);
        return;
    default:
        a->connecting = 0;
        unwatch(a);
        set_error(a, PQerrorMessage(a->conn), "08006");
        remember_failure(a, a->error);
        finish(a);
        return;
    }
}

static void collect_results(struct pgasync *a)
{
    if (!PQconsumeInput(a->conn)) {
        forget_dead_socket(a);
        set_error(a, PQerrorMessage(a->conn), "08006");
        remember_failure(a, a->error);
        finish(a);
        return;
    }
    while (!PQisBusy(a->conn)) {
        PGresult *r = PQgetResult(a->conn);
        if (!r) {
            finish(a);
            return;
        }
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE) {
            const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
            set_error(a, PQresultErrorMessage(r), state);
            if (!state || !strncmp(state, "08", 2) || !strncmp(state, "57P", 3) || !strcmp(state, "57014") ||
                !strcmp(state, "55P03"))
                remember_failure(a, a->error);
        }
        PQclear(a->last);
        a->last = r;
    }
    forget_dead_socket(a);
}

/* Notifications already read from the socket. libpq keeps them in a queue
 * of its own, so they survive the statement callbacks that run first. */
static void deliver_notifications(struct pgasync *a)
{
    PGnotify *n;
    while (a->conn && (n = PQnotifies(a->conn)) != NULL) {
        if (a->on_notify)
            a->on_notify(a->notify_ctx, n->relname, n->extra ? n->extra : "");
        PQfreemem(n);
    }
}

static void on_socket(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    struct pgasync *a = arg;
    if (a->connecting) {
        poll_connect(a);
        return;
    }
    if ((what & EV_WRITE) && PQflush(a->conn) == 0 && watch(a, EV_READ) != 0) {
        if (a->busy)
            fail_unwatchable(a);
        else
            drop_connection(a);
        return;
    }
    if (!a->busy) {
        /* NOTICEs, notifications, or the server going away while we are
         * idle (a restart): the next use finds the connection not ready. */
        if (!PQconsumeInput(a->conn) || PQstatus(a->conn) == CONNECTION_BAD) {
            log_warn("%s connection lost while idle: %s", conn_name(a), PQerrorMessage(a->conn));
            remember_failure(a, PQerrorMessage(a->conn));
            unwatch(a);
            return;
        }
        deliver_notifications(a);
        return;
    }
    collect_results(a);
    deliver_notifications(a);
}

int pgasync_connect(struct pgasync *a, const char *uri, pgasync_done_fn done, void *ctx)
{
    /* Named from the startup packet on (the owner's SET gives the exact
     * name later): the fleet leaves "pgtandem..." backends out of the
     * sessions that bypass it, and a login through an edge such as Neon's
     * proxy takes long enough for a heartbeat to see it unnamed. */
    char name[64];
    snprintf(name, sizeof name, "pgtandem %s", a->label[0] ? a->label : "engine");
    a->conn = pgconn_open(uri, a->pg_options, name, 1);
    a->error[0] = a->sqlstate[0] = '\0';
    if (!a->conn || PQstatus(a->conn) == CONNECTION_BAD) {
        snprintf(a->error, sizeof a->error, "%s", a->conn ? PQerrorMessage(a->conn) : "out of memory");
        remember_failure(a, a->error);
        return -1;
    }
    PQsetNoticeProcessor(a->conn, log_notice, NULL);
    a->connecting = 1;
    a->busy = 1;
    a->done = done;
    a->ctx = ctx;
    snprintf(a->purpose, sizeof a->purpose, "to the connection attempt");
    if (watch(a, EV_WRITE) != 0 || arm(a) != 0)
        return refuse_unwatchable(a);
    return 0;
}

int pgasync_ready(const struct pgasync *a)
{
    return a->conn && !a->connecting && a->ev && PQstatus(a->conn) == CONNECTION_OK;
}

int pgasync_send(struct pgasync *a, const char *sql, int nparams, const char *const *values,
                 pgasync_done_fn done, void *ctx)
{
    if (!pgasync_ready(a) || a->busy) {
        snprintf(a->error, sizeof a->error, "engine connection is %s", a->busy ? "busy" : "not open");
        return -1;
    }
    a->error[0] = a->sqlstate[0] = '\0';
    int ok = nparams ? PQsendQueryParams(a->conn, sql, nparams, NULL, values, NULL, NULL, 0)
                     : PQsendQuery(a->conn, sql);
    if (!ok) {
        snprintf(a->error, sizeof a->error, "%s", PQerrorMessage(a->conn));
        forget_dead_socket(a);
        return -1;
    }
    int flushed = PQflush(a->conn);
    if (flushed < 0) {
        snprintf(a->error, sizeof a->error, "%s", PQerrorMessage(a->conn));
        forget_dead_socket(a);
        return -1;
    }
    a->busy = 1;
    a->done = done;
    a->ctx = ctx;
    describe(a, sql);
    if (watch(a, flushed == 1 ? EV_READ | EV_WRITE : EV_READ) != 0 || arm(a) != 0)
        return refuse_unwatchable(a);
    return 0;
}

void pgasync_close(struct pgasync *a)
{
    int was_busy = a->busy;
    drop_connection(a);
    a->busy = 0;
    a->done = NULL;
    if (was_busy)
        became_idle(a);
}

void pgasync_on_idle(struct pgasync *a, pgasync_idle_fn fn, void *ctx)
{
    a->on_idle = fn;
    a->idle_ctx = ctx;
}

json_t *pgasync_status_json(const struct pgasync *a)
{
    int busy = a->busy && !a->connecting;
    double now = mono_ms();
    return json_pack("{s:b,s:s?,s:o?,s:s?,s:o?,s:i}", "connected", pgasync_ready(a), "in_flight",
                     busy ? a->purpose : NULL, "in_flight_ms", busy ? json_integer((json_int_t)(now - a->sent_ms)) : NULL,
                     "last_error", a->last_error[0] ? a->last_error : NULL, "last_error_age_s",
                     a->last_error_ms > 0 ? json_integer((json_int_t)((now - a->last_error_ms) / 1000)) : NULL,
                     "watchdog_drops", a->drops);
}

int pg_error_transient(const char *sqlstate)
{
    return pg_error_cause(sqlstate) != NULL;
}

const char *pg_error_cause(const char *sqlstate)
{
    static const char *const causes[][2] = {
        {"53100", "the database's disk is full"},
        {"53200", "the database is out of memory"},
        {"53300", "the database has no free connection slots"},
        {"53400", "the database hit a configured limit"},
        {"53", "the database is out of resources"},
        {"57P01", "the database terminated the connection (administrator command, or a compute suspended)"},
        {"57P02", "the database crashed and terminated the connection"},
        {"57P03", "the database is not accepting connections yet (starting up or recovering)"},
        {"08", "the connection to the database failed"},
    };
    if (!sqlstate)
        return NULL;
    for (size_t i = 0; i < sizeof causes / sizeof causes[0]; i++)
        if (!strncmp(sqlstate, causes[i][0], strlen(causes[i][0])))
            return causes[i][1];
    return NULL;
}

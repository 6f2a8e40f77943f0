/* Event-loop-driven libpq (see include/pgasync.h). libpq may swap sockets
 * while connecting, so the watched event is recreated whenever the socket
 * or the direction changes. libpq also closes its socket by itself when
 * the connection breaks; the event on that descriptor is dropped right
 * after every libpq call that may have done so (forget_dead_socket), before
 * the loop can hand the number to a new client socket or a child's pipe. */
#include "pgasync.h"

#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

static void on_socket(evutil_socket_t fd, short what, void *arg);

/* NOTICEs ("drop cascades to ...") belong in the log, not on stderr raw. */
static void log_notice(void *arg, const char *message)
{
    (void)arg;
    size_t n = strlen(message);
    log_debug("engine connection: %.*s", (int)(n && message[n - 1] == '\n' ? n - 1 : n), message);
}

void pgasync_init(struct pgasync *a, struct event_base *base)
{
    memset(a, 0, sizeof *a);
    a->base = base;
    a->ev_fd = -1;
}

static void watch(struct pgasync *a, short what)
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
        if (a->ev)
            event_add(a->ev, NULL);
    }
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

static void finish(struct pgasync *a)
{
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
    if (done)
        done(ctx, last, error ? error_copy : NULL, state ? state_copy : NULL);
    PQclear(last);
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
        watch(a, EV_READ);
        return;
    case PGRES_POLLING_WRITING:
        watch(a, EV_WRITE);
        return;
    case PGRES_POLLING_OK:
        a->connecting = 0;
        PQsetnonblocking(a->conn, 1);
        watch(a, EV_READ);
        finish(a);
        return;
    default:
        a->connecting = 0;
        unwatch(a);
        set_error(a, PQerrorMessage(a->conn), "08006");
        finish(a);
        return;
    }
}

static void collect_results(struct pgasync *a)
{
    if (!PQconsumeInput(a->conn)) {
        forget_dead_socket(a);
        set_error(a, PQerrorMessage(a->conn), "08006");
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
        if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE)
            set_error(a, PQresultErrorMessage(r), PQresultErrorField(r, PG_DIAG_SQLSTATE));
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
    if ((what & EV_WRITE) && PQflush(a->conn) == 0)
        watch(a, EV_READ);
    if (!a->busy) {
        /* NOTICEs, notifications, or the server going away while we are
         * idle (a restart): the next use finds the connection not ready. */
        if (!PQconsumeInput(a->conn) || PQstatus(a->conn) == CONNECTION_BAD) {
            log_warn("engine connection lost while idle: %s", PQerrorMessage(a->conn));
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
    const char *const keys[] = {"dbname", "application_name", NULL};
    const char *const values[] = {uri, "pgtandem", NULL};
    a->conn = PQconnectStartParams(keys, values, 1);
    a->error[0] = a->sqlstate[0] = '\0';
    if (!a->conn || PQstatus(a->conn) == CONNECTION_BAD) {
        snprintf(a->error, sizeof a->error, "%s", a->conn ? PQerrorMessage(a->conn) : "out of memory");
        return -1;
    }
    PQsetNoticeProcessor(a->conn, log_notice, NULL);
    a->connecting = 1;
    a->busy = 1;
    a->done = done;
    a->ctx = ctx;
    watch(a, EV_WRITE);
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
    watch(a, flushed == 1 ? EV_READ | EV_WRITE : EV_READ);
    return 0;
}

void pgasync_close(struct pgasync *a)
{
    unwatch(a);
    PQclear(a->last);
    a->last = NULL;
    if (a->conn)
        PQfinish(a->conn);
    a->conn = NULL;
    a->busy = a->connecting = 0;
    a->done = NULL;
}

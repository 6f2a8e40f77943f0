/* A libpq connection driven by the proxy's event loop: PQconnectStart /
 * PQconnectPoll to connect, PQsendQuery(Params) + PQconsumeInput to run
 * statements, so migration work never blocks client traffic. One statement
 * (or one multi-statement string) in flight at a time. */
#ifndef PGTANDEM_PGASYNC_H
#define PGTANDEM_PGASYNC_H

#include <libpq-fe.h>

#include "compiler.h"

struct event_base;
struct event;

/* result: the last result of the statement (NULL on connect); error: NULL
 * on success, else the first error message; sqlstate likewise. The result
 * is freed after the callback returns. */
typedef void (*pgasync_done_fn)(void *ctx, PGresult *result, const char *error, const char *sqlstate);
/* A NOTIFY on a channel the connection LISTENs to. Called from the loop
 * between statements' callbacks; it may send a statement if not busy. */
typedef void (*pgasync_notify_fn)(void *ctx, const char *channel, const char *payload);
/* The connection has nothing in flight any more: a statement's callback
 * returned without sending another, or the connection was closed or
 * dropped. Called from inside pgasync: it must not send, only note it
 * (defer the work to the loop's next turn). */
typedef void (*pgasync_idle_fn)(void *ctx);

struct pgasync {
    struct event_base *base;
    PGconn *conn;
    struct event *ev;
    int ev_fd;
    short ev_what;
    int connecting;
    int busy;
    pgasync_done_fn done;
    void *ctx;
    PGresult *last;
    char error[1024];
    char sqlstate[6];
    pgasync_notify_fn on_notify;  /* NULL: notifications are dropped */
    void *notify_ctx;
    pgasync_idle_fn on_idle;      /* NULL: nobody waits for the connection */
    void *idle_ctx;
    /* Bounds (pgasync_configure). A statement, or the connecting, not
     * answered within watchdog_ms means the connection is dead: it is
     * dropped and the statement fails with 08006. */
    char label[48];               /* "fleet", "engine": names it in the log and /status */
    char pg_options[160];         /* libpq `options` (-c ...) added to the user's */
    int watchdog_ms;
    struct event *watchdog;
    char purpose[96];             /* what is in flight, for the log */
    double sent_ms;               /* when it was sent (monotonic) */
    char last_error[256];         /* the latest failure of the connection itself */
    double last_error_ms;         /* when (monotonic; 0: never) */
    int drops;                    /* connections dropped by the watchdog */
};

/* Defaults fit bookkeeping (the fleet): 5 s watchdog, statement_timeout
 * 4 s, lock_timeout 2 s. A connection that runs longer statements (the
 * backfill) says so before connecting. */
void pgasync_init(struct pgasync *a, struct event_base *base);
void pgasync_configure(struct pgasync *a, const char *label, int watchdog_ms, const char *pg_options);
/* The name for the log and application_name (when the URI sets none). */
void pgasync_set_label(struct pgasync *a, const char *label);
PGT_MUSTCHECK int pgasync_connect(struct pgasync *a, const char *uri, pgasync_done_fn done, void *ctx);
PGT_MUSTCHECK int pgasync_send(struct pgasync *a, const char *sql, int nparams, const char *const *values,
                 pgasync_done_fn done, void *ctx);
int pgasync_ready(const struct pgasync *a);
void pgasync_close(struct pgasync *a);
/* Whoever shares the connection between several users hears each time it
 * becomes free (pgasync_idle_fn), so a user that found it busy waits for
 * it instead of failing. Such a connection must outlive its statements'
 * callbacks (none of them frees it). */
void pgasync_on_idle(struct pgasync *a, pgasync_idle_fn fn, void *ctx);
/* {connected, in_flight, in_flight_ms, last_error, last_error_age_s,
 * watchdog_drops} for GET /status. */
struct json_t;
struct json_t *pgasync_status_json(const struct pgasync *a);

/* Failures to wait out (with backoff) rather than fail a migration for:
 * the connection went away (class 08, 57P01..57P03: a restart, a Neon
 * compute suspended) or the server ran out of something (class 53: disk
 * full, out of memory, too many connections). */
int pg_error_transient(const char *sqlstate);
/* The cause in words for the log and /status ("the database's disk is
 * full"), or NULL when the SQLSTATE is not one of those. */
const char *pg_error_cause(const char *sqlstate);

/* TCP settings every connection pgtandem opens gets unless the URI (or the
 * PG* environment) sets them: connect_timeout, keepalives, tcp_user_timeout.
 * `pg_options` (may be NULL) goes before the user's own `options`, so the
 * user's win. `app_name` (may be NULL) is the application_name from the
 * startup packet on, whatever the URI says: the fleet tells pgtandem's own
 * backends by it. Async: PQconnectStartParams, else PQconnectdbParams. */
PGconn *pgconn_open(const char *uri, const char *pg_options, const char *app_name, int async);

#endif

/* A libpq connection driven by the proxy's event loop: PQconnectStart /
 * PQconnectPoll to connect, PQsendQuery(Params) + PQconsumeInput to run
 * statements, so migration work never blocks client traffic. One statement
 * (or one multi-statement string) in flight at a time. */
#ifndef PGTANDEM_PGASYNC_H
#define PGTANDEM_PGASYNC_H

#include <libpq-fe.h>

struct event_base;
struct event;

/* result: the last result of the statement (NULL on connect); error: NULL
 * on success, else the first error message; sqlstate likewise. The result
 * is freed after the callback returns. */
typedef void (*pgasync_done_fn)(void *ctx, PGresult *result, const char *error, const char *sqlstate);
/* A NOTIFY on a channel the connection LISTENs to. Called from the loop
 * between statements' callbacks; it may send a statement if not busy. */
typedef void (*pgasync_notify_fn)(void *ctx, const char *channel, const char *payload);

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
};

void pgasync_init(struct pgasync *a, struct event_base *base);
int pgasync_connect(struct pgasync *a, const char *uri, pgasync_done_fn done, void *ctx);
int pgasync_send(struct pgasync *a, const char *sql, int nparams, const char *const *values,
                 pgasync_done_fn done, void *ctx);
int pgasync_ready(const struct pgasync *a);
void pgasync_close(struct pgasync *a);

#endif

/* GET /healthz and GET /readyz for load balancers and orchestrators.
 *
 * Both are answered without the token (admin.c lets exactly these two GETs
 * through), so they tell nothing but "ok", "ready" or "not ready: <word>".
 * /healthz: the loop runs. /readyz: the proxy is not shutting down, not
 * fenced by the fleet, and its upstream answers.
 *
 * Whether the upstream answers is learnt by one cheap probe: the start of
 * a session's upstream connection (upstream.c: TCP to the address sessions
 * use, then SSLRequest and the TLS handshake with its verification when
 * the upstream is TLS), closed before any startup packet; Postgres logs
 * nothing for a connection that ends there cleanly (TLS with its
 * close_notify). Its outcome is kept for a second; requests that come
 * while a probe runs wait for it, so a burst of probes costs the upstream
 * one connection, and the probe's own deadline bounds every wait. */
#include "admin_health.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay_control.h"
#include "sbuf.h"
#include "relay.h"
#include "upstream.h"

#define PROBE_TIMEOUT_MS 1000 /* an upstream slower than this to connect (and shake hands) is not ready */
#define PROBE_KEPT_MS 1000    /* a probe's outcome answers the requests of the next second */
#define MAX_WAITERS 64        /* beyond: answered from the last outcome at once */

struct health_waiter {
    struct admin_health *h;
    struct evhttp_request *req;
    struct health_waiter *next;
};

struct admin_health {
    struct relay *relay;
    struct upstream_connect *probe; /* in flight; NULL when none */
    struct event *deadline;     /* the probe's */
    uint64_t checked_us;        /* when the last probe ended; 0: never */
    int reachable;              /* its outcome */
    struct health_waiter *waiters;
    int nwaiters;
};

static void reply_text(struct evhttp_request *req, int code, const char *text)
{
    struct evbuffer *out = evbuffer_new();
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    evhttp_add_header(headers, "Content-Type", "text/plain; charset=utf-8");
    evhttp_add_header(headers, "Cache-Control", "no-store");
    evhttp_add_header(headers, "X-Content-Type-Options", "nosniff");
    if (out)
        evbuffer_add_printf(out, "%s\n", text);
    evhttp_send_reply(req, code, code == 200 ? "OK" : "Service Unavailable", out);
    if (out)
        evbuffer_free(out);
}

/* A reason of the proxy's own not to be sent traffic, or NULL. */
static const char *own_reason(const struct admin_health *h)
{
    if (h->relay->shutting_down)
        return "shutting_down";
    return relay_lease_expired(h->relay) ? "fenced" : NULL;
}

/* Why the proxy should not be sent traffic now, or NULL. The upstream's
 * word is the last probe's: callers decide whether it is fresh. */
static const char *not_ready_reason(const struct admin_health *h)
{
    const char *why = own_reason(h);
    return why ? why : h->reachable ? NULL : "upstream_unreachable";
}

static void answer_ready(struct admin_health *h, struct evhttp_request *req)
{
    const char *why = not_ready_reason(h);
    char text[64];
    if (!why) {
        reply_text(req, 200, "ready");
        return;
    }
    snprintf(text, sizeof text, "not ready: %s", why);
    reply_text(req, 503, text);
}

static void waiter_gone(struct evhttp_connection *conn, void *arg)
{
    (void)conn;
    struct health_waiter *w = arg;
    struct admin_health *h = w->h;
    for (struct health_waiter **p = &h->waiters; *p; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            h->nwaiters--;
            break;
        }
    free(w);
}

/* Detaches every waiter; answers them unless `answer` is 0 (exit). */
static void release_waiters(struct admin_health *h, int answer)
{
    struct health_waiter *w = h->waiters;
    h->waiters = NULL;
    h->nwaiters = 0;
    while (w) {
        struct health_waiter *next = w->next;
        struct evhttp_connection *conn = evhttp_request_get_connection(w->req);
        if (conn)
            evhttp_connection_set_closecb(conn, NULL, NULL);
        if (answer)
            answer_ready(h, w->req);
        free(w);
        w = next;
    }
}

static void stop_probe(struct admin_health *h)
{
    upstream_connect_cancel(h->probe); /* NULL: nothing in flight */
    h->probe = NULL;
    if (h->deadline)
        evtimer_del(h->deadline);
}

static void probe_done(struct admin_health *h, int reachable)
{
    stop_probe(h);
    h->reachable = reachable;
    h->checked_us = relay_now_us(h->relay);
    if (!h->checked_us)
        h->checked_us = 1;
    release_waiters(h, 1);
}

/* The connection a session would have got (or why not, already logged by
 * upstream.c): closed at once, TLS with its close_notify. */
static void probe_ready(void *ctx, struct sbuf *sb, const char *error)
{
    (void)error;
    struct admin_health *h = ctx;
    h->probe = NULL; /* upstream.c has let it go */
    if (sb)
        sbuf_free(sb);
    probe_done(h, sb != NULL);
}

static void probe_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    probe_done(arg, 0);
}

/* 0 when a probe is on its way (probe_done follows from the loop). */
static int start_probe(struct admin_health *h)
{
    struct relay *relay = h->relay;
    struct timeval tv = {PROBE_TIMEOUT_MS / 1000, (PROBE_TIMEOUT_MS % 1000) * 1000};
    if (!h->deadline && !(h->deadline = evtimer_new(relay->base, probe_deadline, h)))
        return -1;
    if (evtimer_add(h->deadline, &tv) != 0)
        return -1;
    h->probe = upstream_connect_start(relay, probe_ready, h);
    if (!h->probe) {
        evtimer_del(h->deadline);
        return -1;
    }
    return 0;
}

static void handle_readyz(struct admin_health *h, struct evhttp_request *req)
{
    /* A reason of the proxy's own needs no probe. */
    if (own_reason(h)) {
        answer_ready(h, req);
        return;
    }
    uint64_t now = relay_now_us(h->relay);
    int fresh = h->checked_us && now - h->checked_us < (uint64_t)PROBE_KEPT_MS * 1000u;
    if (fresh || h->nwaiters >= MAX_WAITERS) {
        answer_ready(h, req);
        return;
    }
    if (!h->probe && start_probe(h) != 0) {
        probe_done(h, 0);
        answer_ready(h, req);
        return;
    }
    struct health_waiter *w = calloc(1, sizeof *w);
    if (!w) {
        answer_ready(h, req);
        return;
    }
    w->h = h;
    w->req = req;
    w->next = h->waiters;
    h->waiters = w;
    h->nwaiters++;
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    if (conn)
        evhttp_connection_set_closecb(conn, waiter_gone, w);
}

int admin_health_route(struct admin_health *h, struct evhttp_request *req, const char *path)
{
    if (strcmp(path, "/healthz") == 0) {
        reply_text(req, 200, "ok");
        return 1;
    }
    if (strcmp(path, "/readyz") == 0) {
        handle_readyz(h, req);
        return 1;
    }
    return 0;
}

struct admin_health *admin_health_new(struct relay *relay)
{
    struct admin_health *h = calloc(1, sizeof *h);
    if (h)
        h->relay = relay;
    return h;
}

void admin_health_free(struct admin_health *h)
{
    if (!h)
        return;
    release_waiters(h, 0);
    stop_probe(h);
    if (h->deadline)
        event_free(h->deadline);
    free(h);
}

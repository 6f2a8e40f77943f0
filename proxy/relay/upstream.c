/* Upstream connections: connect to the cached upstream address (TCP or a
 * Unix socket), send SSLRequest, run the TLS handshake with SNI, then hand
 * the stream buffer to whoever asked. Also sends CancelRequests, on fresh
 * connections as Postgres requires. */
#include "upstream.h"

#include <assert.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "log.h"
#include "proto.h"
#include "sbuf.h"
#include "relay.h"
#include "tls.h"

#define CONNECT_TIMEOUT_S 30 /* TCP + TLS to the upstream; PgBouncer uses 15 */
#define DNS_REFRESH_S 30

enum uc_state { UC_CONNECTING, UC_SSL_REQUEST, UC_TLS_HANDSHAKE };

struct upstream_connect {
    struct relay *relay;
    struct sbuf *sb;
    enum uc_state state;
    struct event *timer;   /* connect timeout, or a failure reported on the next turn */
    upstream_ready_fn ready;
    void *ctx;
    char error[384];
};

static void uc_readable(struct sbuf *sb, void *arg);
static void uc_drained(struct sbuf *sb, void *arg);
static void uc_ready(struct sbuf *sb, void *arg);
static void uc_error(struct sbuf *sb, void *arg, int eof, const char *why);
static const struct sbuf_ops uc_ops = {uc_readable, uc_drained, uc_ready, uc_error};

/* ---- the upstream address ---- */

static void dns_answer_cb(int result, struct evutil_addrinfo *res, void *arg)
{
    struct relay *relay = arg;
    struct upstream_address *ua = &relay->upstream_addr;
    ua->pending = NULL;
    if (result == EVUTIL_EAI_CANCEL)
        return;
    if (result != 0 || !res) {
        snprintf(ua->error, sizeof ua->error, "could not resolve host name \"%s\": %s", relay->cfg.upstream_host,
                 evutil_gai_strerror(result));
        if (ua->addrlen)
            log_warn("%s (keeping the last address)", ua->error);
    } else {
        memcpy(&ua->addr, res->ai_addr, res->ai_addrlen);
        ua->addrlen = (int)res->ai_addrlen;
        ((struct sockaddr_in *)&ua->addr)->sin_port = htons((uint16_t)relay->cfg.upstream_port);
        ua->error[0] = '\0';
    }
    if (res)
        evutil_freeaddrinfo(res);
}

static void resolve(struct relay *relay)
{
    struct upstream_address *ua = &relay->upstream_addr;
    if (ua->pending)
        return;
    struct evutil_addrinfo hints = {0};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    /* hostaddr, as in libpq: connect there, keep the name for SNI and checks */
    const char *where = relay->cfg.upstream_hostaddr ? relay->cfg.upstream_hostaddr : relay->cfg.upstream_host;
    ua->pending = evdns_getaddrinfo(relay->dns, where, NULL, &hints, dns_answer_cb, relay);
}

static void refresh_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    resolve(arg);
}

void upstream_address_init(struct relay *relay)
{
    struct upstream_address *ua = &relay->upstream_addr;
    const struct config *cfg = &relay->cfg;
    if (cfg->upstream_host[0] == '/') {
        struct sockaddr_un *sun = (struct sockaddr_un *)&ua->addr;
        sun->sun_family = AF_UNIX;
        snprintf(sun->sun_path, sizeof sun->sun_path, "%s/.s.PGSQL.%d", cfg->upstream_host, cfg->upstream_port);
        ua->addrlen = sizeof *sun;
        return;
    }
    /* Numeric hosts answer synchronously; names are looked up by evdns. */
    resolve(relay);
    ua->refresh_timer = event_new(relay->base, -1, EV_PERSIST, refresh_cb, relay);
    struct timeval tv = {DNS_REFRESH_S, 0};
    if (!ua->refresh_timer || event_add(ua->refresh_timer, &tv) != 0)
        log_warn("upstream: could not set the DNS refresh timer; %s stays at its first address", cfg->upstream_host);
}

void upstream_address_free(struct relay *relay)
{
    struct upstream_address *ua = &relay->upstream_addr;
    if (ua->pending)
        evdns_getaddrinfo_cancel(ua->pending);
    ua->pending = NULL;
    if (ua->refresh_timer)
        event_free(ua->refresh_timer);
    ua->refresh_timer = NULL;
}

/* ---- one connection attempt ---- */

static void uc_destroy(struct upstream_connect *uc)
{
    if (uc->timer)
        event_free(uc->timer);
    sbuf_free(uc->sb);
    free(uc);
}

static void uc_deliver(struct upstream_connect *uc)
{
    struct sbuf *sb = uc->sb;
    uc->sb = NULL;
    upstream_ready_fn ready = uc->ready;
    void *ctx = uc->ctx;
    uc_destroy(uc);
    ready(ctx, sb, NULL);
}

static void uc_fail(struct upstream_connect *uc, const char *reason)
{
    const struct config *cfg = &uc->relay->cfg;
    char msg[sizeof uc->error];
    snprintf(msg, sizeof msg, "could not connect to upstream %s:%d: %s", cfg->upstream_host, cfg->upstream_port,
             reason);
    log_warn("%s", msg);
    upstream_ready_fn ready = uc->ready;
    void *ctx = uc->ctx;
    uc_destroy(uc);
    ready(ctx, NULL, msg);
}

static void uc_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct upstream_connect *uc = arg;
    uc_fail(uc, uc->error[0] ? uc->error : "timed out");
}

struct upstream_connect *upstream_connect_start(struct relay *relay, upstream_ready_fn ready, void *ctx)
{
    assert(relay && ready);
    struct upstream_connect *uc = calloc(1, sizeof *uc);
    if (!uc)
        return NULL;
    uc->relay = relay;
    uc->ready = ready;
    uc->ctx = ctx;
    uc->timer = evtimer_new(relay->base, uc_timer_cb, uc);
    if (!uc->timer) {
        free(uc);
        return NULL;
    }
    struct upstream_address *ua = &relay->upstream_addr;
    if (ua->addrlen)
        uc->sb = sbuf_connect(relay->base, (struct sockaddr *)&ua->addr, ua->addrlen, &uc_ops, uc, 0);
    if (!uc->sb) {
        /* Report on the next loop turn: callers expect an asynchronous answer. */
        snprintf(uc->error, sizeof uc->error, "%s",
                 !ua->addrlen ? (ua->error[0] ? ua->error : "host name not resolved yet") : strerror(errno));
        if (!ua->addrlen)
            resolve(relay);
        event_active(uc->timer, EV_TIMEOUT, 0);
        return uc;
    }
    struct timeval tv = {CONNECT_TIMEOUT_S, 0};
    if (evtimer_add(uc->timer, &tv) != 0) { /* fails now rather than waiting unbounded */
        snprintf(uc->error, sizeof uc->error, "could not set the connect timer");
        event_active(uc->timer, EV_TIMEOUT, 0);
    }
    return uc;
}

void upstream_connect_cancel(struct upstream_connect *uc)
{
    if (uc)
        uc_destroy(uc);
}

/* An upstream whose path died silently (a NAT that dropped the flow, a
 * compute gone) is found within a minute of silence, not the kernel's two
 * hours: idle sessions are normal, so the probes are gentler than on the
 * engine's connections (pgasync.c). */
static void set_keepalive(int fd)
{
    int on = 1, idle = 30, interval = 10, count = 3;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
}

static void uc_ready(struct sbuf *sb, void *arg)
{
    struct upstream_connect *uc = arg;
    if (uc->state == UC_TLS_HANDSHAKE) {
        uc_deliver(uc);
        return;
    }
    if (uc->relay->upstream_addr.addr.ss_family != AF_UNIX) {
        int one = 1;
        setsockopt(sb->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        set_keepalive(sb->fd);
    }
    if (!uc->relay->upstream_tls) {
        uc_deliver(uc);
        return;
    }
    uint8_t req[8];
    proto_put_u32(req, 8);
    proto_put_u32(req + 4, PROTO_SSL_CODE);
    uc->state = UC_SSL_REQUEST;
    evbuffer_add(sb->out, req, sizeof req);
    sbuf_flush(sb);
}

static void uc_readable(struct sbuf *sb, void *arg)
{
    struct upstream_connect *uc = arg;
    if (uc->state != UC_SSL_REQUEST)
        return;
    char answer;
    if (evbuffer_remove(sb->in, &answer, 1) != 1)
        return;
    if (answer == 'N') {
        uc_fail(uc, "the server does not support TLS, but sslmode requires it");
        return;
    }
    if (answer != 'S') {
        uc_fail(uc, "unexpected answer to SSLRequest");
        return;
    }
    char why[256];
    SSL *ssl = tls_upstream_ssl(uc->relay->upstream_tls, &uc->relay->cfg, why, sizeof why);
    if (!ssl) {
        uc_fail(uc, why);
        return;
    }
    uc->state = UC_TLS_HANDSHAKE;
    if (sbuf_start_tls(sb, ssl, 0) != 0)
        uc_fail(uc, "unencrypted data after the SSL response");
}

static void uc_drained(struct sbuf *sb, void *arg)
{
    (void)sb;
    (void)arg;
}

static void uc_error(struct sbuf *sb, void *arg, int eof, const char *why)
{
    (void)sb;
    struct upstream_connect *uc = arg;
    uc_fail(uc, eof ? "connection closed by the server" : why);
}

/* ---- cancel requests ---- */

/* One CancelRequest on its way to Postgres. Postgres closes the connection
 * only once it has signalled the backend, so that close is the answer the
 * client's own cancel connection waits for (libpq, asyncpg and DBD::Pg send
 * their next query only after it). Freed by its own callbacks, or by
 * upstream_cancels_free at exit. */
struct upstream_cancel {
    struct upstream_cancel *prev, *next;
    struct relay *relay;
    struct upstream_connect *connecting; /* until connected */
    struct sbuf *sb;                     /* then the connection carrying it */
    struct event *timer;                 /* cancel_wait_timeout */
    cancel_done_fn done;
    uint64_t waiter;
    uint8_t packet[16];
};

static void cancel_free(struct upstream_cancel *c)
{
    if (c->connecting)
        upstream_connect_cancel(c->connecting);
    sbuf_free(c->sb);
    if (c->timer)
        event_free(c->timer);
    if (c->prev)
        c->prev->next = c->next;
    else
        c->relay->cancels = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
}

/* The request has been answered (or given up on): tell whoever waits. */
static void cancel_finish(struct upstream_cancel *c)
{
    struct relay *relay = c->relay;
    cancel_done_fn done = c->done;
    uint64_t waiter = c->waiter;
    cancel_free(c);
    if (done)
        done(relay, waiter);
}

static void cancel_readable(struct sbuf *sb, void *arg)
{
    (void)arg;
    evbuffer_drain(sb->in, evbuffer_get_length(sb->in));
}

static void cancel_drained(struct sbuf *sb, void *arg)
{
    (void)sb;
    (void)arg;
}

static void cancel_ready(struct sbuf *sb, void *arg)
{
    (void)sb;
    (void)arg;
}

/* Postgres closes the connection once the backend has been signalled. */
static void cancel_closed(struct sbuf *sb, void *arg, int eof, const char *why)
{
    (void)sb;
    struct upstream_cancel *c = arg;
    if (!eof)
        log_info("cancel connection: %s", why);
    cancel_finish(c);
}

static const struct sbuf_ops cancel_ops = {cancel_readable, cancel_drained, cancel_ready, cancel_closed};

static void cancel_connected(void *ctx, struct sbuf *sb, const char *error)
{
    struct upstream_cancel *c = ctx;
    c->connecting = NULL;
    if (!sb) {
        log_warn("cancel request not delivered: %s", error);
        cancel_finish(c);
        return;
    }
    c->sb = sb;
    sbuf_set_ops(sb, &cancel_ops, c);
    evbuffer_add(sb->out, c->packet, sizeof c->packet);
    sbuf_flush(sb);
}

static void cancel_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct upstream_cancel *c = arg;
    log_info("cancel request: the upstream did not close the connection within %d ms; giving up on it",
             c->relay->cfg.cancel_wait_timeout_ms);
    cancel_finish(c);
}

int upstream_send_cancel(struct relay *relay, unsigned pid, unsigned key, cancel_done_fn done, uint64_t waiter)
{
    assert(relay && done);
    struct upstream_cancel *c = calloc(1, sizeof *c);
    if (!c)
        return -1;
    c->relay = relay;
    c->done = done;
    c->waiter = waiter;
    proto_put_u32(c->packet, 16);
    proto_put_u32(c->packet + 4, PROTO_CANCEL_CODE);
    proto_put_u32(c->packet + 8, pid);
    proto_put_u32(c->packet + 12, key);
    c->next = relay->cancels;
    if (relay->cancels)
        relay->cancels->prev = c;
    relay->cancels = c;
    int ms = relay->cfg.cancel_wait_timeout_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    if (!(c->timer = evtimer_new(relay->base, cancel_timeout_cb, c)) || evtimer_add(c->timer, &tv) != 0 ||
        !(c->connecting = upstream_connect_start(relay, cancel_connected, c))) {
        c->done = NULL;
        cancel_free(c);
        return -1;
    }
    return 0;
}

void upstream_cancels_free(struct relay *relay)
{
    for (struct upstream_cancel *c = relay->cancels, *next; c; c = next) {
        next = c->next;
        cancel_free(c);
    }
}

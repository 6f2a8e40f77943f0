/* Upstream connections: resolve, connect (TCP or a Unix socket), send
 * SSLRequest, run the TLS handshake with SNI, then hand the bufferevent to
 * whoever asked. Also sends CancelRequests on fresh connections, because
 * Postgres only accepts a cancel on a new connection. */
#include "upstream.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "log.h"
#include "proto.h"
#include "server.h"
#include "tls.h"

#define CONNECT_TIMEOUT_S 10

enum uc_state { UC_CONNECTING, UC_SSL_REQUEST, UC_TLS_HANDSHAKE };

struct upstream_connect {
    struct server *srv;
    struct bufferevent *bev;
    enum uc_state state;
    upstream_ready_fn ready;
    void *ctx;
    int deferred;      /* a failure report is scheduled on the loop */
    char error[384];
};

static void uc_read_cb(struct bufferevent *bev, void *arg);
static void uc_event_cb(struct bufferevent *bev, short what, void *arg);

static void uc_finish(struct upstream_connect *uc, const char *error)
{
    struct bufferevent *bev = uc->bev;
    uc->bev = NULL;
    if (error && bev) {
        bufferevent_free(bev);
        bev = NULL;
    }
    if (bev) {
        bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
        bufferevent_set_timeouts(bev, NULL, NULL);
    }
    upstream_ready_fn ready = uc->ready;
    void *ctx = uc->ctx;
    free(uc);
    if (ready)
        ready(ctx, bev, error);
    else if (bev)
        bufferevent_free(bev);
}

static void uc_fail(struct upstream_connect *uc, const char *reason)
{
    const struct config *cfg = &uc->srv->cfg;
    snprintf(uc->error, sizeof uc->error, "could not connect to upstream %s:%d: %s", cfg->upstream_host,
             cfg->upstream_port, reason);
    log_warn("%s", uc->error);
    char copy[sizeof uc->error];
    memcpy(copy, uc->error, sizeof copy);
    uc_finish(uc, copy);
}

static void uc_fail_later_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct upstream_connect *uc = arg;
    uc_fail(uc, uc->error);
}

static void set_timeout(struct bufferevent *bev)
{
    struct timeval tv = {CONNECT_TIMEOUT_S, 0};
    bufferevent_set_timeouts(bev, &tv, &tv);
}

static int start_unix(struct upstream_connect *uc)
{
    const struct config *cfg = &uc->srv->cfg;
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    int n = snprintf(sun.sun_path, sizeof sun.sun_path, "%s/.s.PGSQL.%d", cfg->upstream_host, cfg->upstream_port);
    if (n < 0 || (size_t)n >= sizeof sun.sun_path) {
        snprintf(uc->error, sizeof uc->error, "socket path too long");
        return -1;
    }
    if (bufferevent_socket_connect(uc->bev, (struct sockaddr *)&sun, sizeof sun) != 0) {
        snprintf(uc->error, sizeof uc->error, "%s", strerror(errno));
        return -1;
    }
    return 0;
}

struct upstream_connect *upstream_connect_start(struct server *srv, upstream_ready_fn ready, void *ctx)
{
    struct upstream_connect *uc = calloc(1, sizeof *uc);
    if (!uc)
        return NULL;
    uc->srv = srv;
    uc->ready = ready;
    uc->ctx = ctx;
    uc->state = UC_CONNECTING;
    uc->bev = bufferevent_socket_new(srv->base, -1, BEV_OPT_CLOSE_ON_FREE);
    int rc = -1;
    if (!uc->bev) {
        snprintf(uc->error, sizeof uc->error, "out of memory");
    } else {
        bufferevent_setcb(uc->bev, uc_read_cb, NULL, uc_event_cb, uc);
        set_timeout(uc->bev);
        if (srv->cfg.upstream_host[0] == '/') {
            rc = start_unix(uc);
        } else {
            rc = bufferevent_socket_connect_hostname(uc->bev, srv->dns, AF_UNSPEC, srv->cfg.upstream_host,
                                                     srv->cfg.upstream_port);
            if (rc != 0)
                snprintf(uc->error, sizeof uc->error, "%s", strerror(errno));
        }
    }
    if (rc != 0) {
        /* Report on the next loop turn: callers expect an asynchronous answer. */
        struct timeval now = {0, 0};
        uc->deferred = 1;
        event_base_once(srv->base, -1, EV_TIMEOUT, uc_fail_later_cb, uc, &now);
    }
    return uc;
}

void upstream_connect_cancel(struct upstream_connect *uc)
{
    if (!uc)
        return;
    if (uc->deferred) {
        uc->ready = NULL; /* the scheduled report frees it */
        return;
    }
    if (uc->bev)
        bufferevent_free(uc->bev);
    free(uc);
}

static void send_ssl_request(struct upstream_connect *uc)
{
    uint8_t req[8];
    proto_put_u32(req, 8);
    proto_put_u32(req + 4, PROTO_SSL_CODE);
    uc->state = UC_SSL_REQUEST;
    bufferevent_write(uc->bev, req, sizeof req);
    bufferevent_enable(uc->bev, EV_READ | EV_WRITE);
}

static void start_tls(struct upstream_connect *uc)
{
    struct server *srv = uc->srv;
    if (evbuffer_get_length(bufferevent_get_input(uc->bev)) > 0) {
        uc_fail(uc, "unencrypted data after the SSL response");
        return;
    }
    SSL *ssl = tls_upstream_ssl(srv->upstream_tls, &srv->cfg);
    if (!ssl) {
        uc_fail(uc, "out of memory");
        return;
    }
    evutil_socket_t fd = bufferevent_getfd(uc->bev);
    struct bufferevent *plain = uc->bev;
    bufferevent_setcb(plain, NULL, NULL, NULL, NULL);
    bufferevent_setfd(plain, -1);
    bufferevent_free(plain);
    uc->bev = bufferevent_openssl_socket_new(srv->base, fd, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
    if (!uc->bev) {
        SSL_free(ssl);
        evutil_closesocket(fd);
        uc_fail(uc, "out of memory");
        return;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(uc->bev, 1);
    uc->state = UC_TLS_HANDSHAKE;
    bufferevent_setcb(uc->bev, uc_read_cb, NULL, uc_event_cb, uc);
    set_timeout(uc->bev);
    bufferevent_enable(uc->bev, EV_READ | EV_WRITE);
}

static void uc_read_cb(struct bufferevent *bev, void *arg)
{
    struct upstream_connect *uc = arg;
    if (uc->state != UC_SSL_REQUEST)
        return;
    char answer;
    if (bufferevent_read(bev, &answer, 1) != 1)
        return;
    if (answer == 'S')
        start_tls(uc);
    else if (answer == 'N')
        uc_fail(uc, "the server does not support TLS but sslmode requires it");
    else
        uc_fail(uc, "unexpected answer to SSLRequest");
}

static void describe_tls_error(struct bufferevent *bev, char *buf, size_t len)
{
    unsigned long e = bufferevent_get_openssl_error(bev);
    if (!e) {
        snprintf(buf, len, "TLS handshake failed");
        return;
    }
    char detail[256];
    ERR_error_string_n(e, detail, sizeof detail);
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (vr != X509_V_OK)
        snprintf(buf, len, "TLS certificate verification failed: %s", X509_verify_cert_error_string(vr));
    else
        snprintf(buf, len, "TLS handshake failed: %s", detail);
    while (bufferevent_get_openssl_error(bev))
        ;
}

static void uc_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct upstream_connect *uc = arg;
    char reason[300];
    if (what & BEV_EVENT_CONNECTED) {
        if (uc->state == UC_TLS_HANDSHAKE) {
            uc_finish(uc, NULL);
            return;
        }
        evutil_socket_t fd = bufferevent_getfd(bev);
        int one = 1;
        if (uc->srv->cfg.upstream_host[0] != '/')
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (uc->srv->upstream_tls)
            send_ssl_request(uc);
        else
            uc_finish(uc, NULL);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        uc_fail(uc, "timed out");
    } else if (uc->state == UC_TLS_HANDSHAKE) {
        describe_tls_error(bev, reason, sizeof reason);
        uc_fail(uc, reason);
    } else {
        int dns_err = bufferevent_socket_get_dns_error(bev);
        int sock_err = EVUTIL_SOCKET_ERROR();
        if (dns_err)
            snprintf(reason, sizeof reason, "%s", evutil_gai_strerror(dns_err));
        else if (what & BEV_EVENT_EOF)
            snprintf(reason, sizeof reason, "connection closed by the server");
        else
            snprintf(reason, sizeof reason, "%s", evutil_socket_error_to_string(sock_err));
        uc_fail(uc, reason);
    }
}

/* ---- cancel requests ---- */

struct cancel_sender {
    uint8_t packet[16];
};

static void cancel_done_cb(struct bufferevent *bev, void *arg)
{
    /* Postgres closes the connection after reading the request; close ours
     * once the request is written. */
    bufferevent_free(bev);
    free(arg);
}

static void cancel_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)what;
    bufferevent_free(bev);
    free(arg);
}

static void cancel_ready(void *ctx, struct bufferevent *bev, const char *error)
{
    struct cancel_sender *cs = ctx;
    if (!bev) {
        log_warn("cancel request not delivered: %s", error);
        free(cs);
        return;
    }
    bufferevent_setcb(bev, NULL, cancel_done_cb, cancel_event_cb, cs);
    bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
    bufferevent_enable(bev, EV_WRITE);
    bufferevent_write(bev, cs->packet, sizeof cs->packet);
}

void upstream_send_cancel(struct server *srv, unsigned pid, unsigned key)
{
    struct cancel_sender *cs = calloc(1, sizeof *cs);
    if (!cs)
        return;
    proto_put_u32(cs->packet, 16);
    proto_put_u32(cs->packet + 4, PROTO_CANCEL_CODE);
    proto_put_u32(cs->packet + 8, pid);
    proto_put_u32(cs->packet + 12, key);
    if (!upstream_connect_start(srv, cancel_ready, cs))
        free(cs);
}

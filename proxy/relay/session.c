/* Client sessions: the startup exchange, TLS termination, pass-through
 * authentication and the relay. Bytes stream from one stream buffer to the
 * other without whole messages being assembled; only headers (and the few
 * small messages the proxy must read or rewrite) are inspected. */
#include "session.h"

#include <arpa/inet.h>
#include <assert.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "auth.h"
#include "auth_lookup.h"
#include "compiler.h"
#include "log.h"
#include "migration_sql.h"
#include "peer.h"
#include "pin.h"
#include "prepared.h"
#include "proxy_header.h"
#include "sbuf.h"
#include "search_path.h"
#include "relay.h"
#include "source_limit.h"
#include "startup_set.h"
#include "statement_map.h"
#include "tls.h"
#include "upstream.h"
#include "users.h"

#define MAX_AUTH_MESSAGE 65536u /* Authentication*, BackendKeyData: small by nature */
#define PROTO_MAX_AUTH_MESSAGE MAX_AUTH_MESSAGE

static void client_readable(struct sbuf *sb, void *arg);
static void client_drained(struct sbuf *sb, void *arg);
static void client_tls_ready(struct sbuf *sb, void *arg);
static void client_error(struct sbuf *sb, void *arg, int eof, const char *why);
static void server_readable(struct sbuf *sb, void *arg);
static void server_drained(struct sbuf *sb, void *arg);
static void server_ready(struct sbuf *sb, void *arg);
static void server_error(struct sbuf *sb, void *arg, int eof, const char *why);

static const struct sbuf_ops client_ops = {client_readable, client_drained, client_tls_ready, client_error};
static const struct sbuf_ops server_ops = {server_readable, server_drained, server_ready, server_error};
static void relay_client_to_server(struct session *s);
static void relay_server_to_client(struct session *s);
static void session_fail_silently(struct session *s);

static void free_later(struct session *s);
static void server_lent(struct pool_waiter *w, struct pool_server *ps);
static void server_not_lent(struct pool_waiter *w, const char *sqlstate, const char *message);
static const struct pool_waiter_ops waiter_ops = {server_lent, server_not_lent};

/* pool_mode "transaction": a server is lent per transaction (pool.h). */
static int pooled(const struct session *s)
{
    return s->relay->cfg.pool_transaction;
}

/* A startup parameter of the session's StartupMessage (NULL before it came). */
static const char *param(const struct session *s, const char *key)
{
    return s->startup ? startup_param(&s->startup->sp, key) : NULL;
}

const char *session_version(const struct session *s)
{
    return s->startup ? s->startup->version : NULL;
}

const char *session_pin_reason(const struct session *s)
{
    return s->pinned && s->extra ? s->extra->pin_reason : NULL;
}

/* The client's address: a trusted PROXY header's, else the peer's. */
static const char *addr_of(const struct session *s)
{
    return s->extra && s->extra->client_addr[0] ? s->extra->client_addr : s->addr;
}

/* The side struct, made on first use; NULL when out of memory. */
static struct session_extra *extra(struct session *s)
{
    if (!s->extra)
        s->extra = calloc(1, sizeof *s->extra);
    return s->extra;
}

/* Records the version schema put first on the session's search_path
 * (NULL: none). 0, or -1 out of memory (the record then says none). */
static int set_routed_schema(struct session *s, const char *schema)
{
    struct session_extra *x = schema || s->extra ? extra(s) : NULL;
    if (!x)
        return schema ? -1 : 0;
    free(x->routed_schema);
    x->routed_schema = schema ? strdup(schema) : NULL;
    return schema && !x->routed_schema ? -1 : 0;
}

/* At a transaction boundary with nothing of the client's or ours in flight. */
static int idle_at_boundary(const struct session *s)
{
    return s->state == SESS_READY && tracker_at_boundary(&s->tracker) && !s->swallow_rfq && !s->s2c_remaining &&
           !s->c2s_remaining && !s->holding;
}

/* Nothing in flight on either side of an idle session: its sockets' buffers
 * go until bytes flow again (sbuf_release_idle). A lent server's are the
 * pool's: only an own upstream's are released with the client's. */
static void release_idle_buffers(struct session *s)
{
    if (s->client)
        sbuf_release_idle(s->client);
    if (s->backend && !s->lent)
        sbuf_release_idle(s->backend);
}

/* Lets go of the upstream: a lent server goes back to its pool (clean
 * only at a boundary, with nothing of ours still due, and never after it
 * was pinned: its state is the client's), an own one is closed. */
static void drop_server(struct session *s)
{
    if (s->waiter.in)
        pool_forget_waiter(&s->waiter);
    if (s->lent) {
        int clean = s->state == SESS_READY && tracker_at_boundary(&s->tracker) && !s->swallow_rfq &&
                    !s->s2c_remaining && !s->c2s_remaining && !s->pinned && reply_queue_empty(&s->lent->replies);
        struct pool_server *ps = s->lent;
        s->lent = NULL;
        s->backend = NULL;
        pool_release(ps, clean);
        return;
    }
    sbuf_free(s->backend);
    s->backend = NULL;
}

/* Ready and inside a transaction or request: what a pause waits for. Kept
 * in relay->counts.busy so the drain is a counter check, not a scan; called
 * after every change of the state or the tracker. */
static void sync_busy(struct session *s)
{
    int busy = s->state == SESS_READY && !tracker_at_boundary(&s->tracker);
    if (busy == s->busy)
        return;
    s->busy = busy;
    session_counts_busy(&s->relay->counts, busy);
}

void session_set_state(struct session *s, enum session_state to)
{
    assert(s && s->relay);
    enum session_state from = s->state;
    int forbidden = !session_state_allowed(from, to);
    if (forbidden) {
#ifdef PGT_DEBUG
        assert(!"forbidden session state transition");
#endif
        log_error("session %llu (%s): forbidden state transition %s -> %s; closing the session",
                  (unsigned long long)s->id, addr_of(s), session_state_name(from), session_state_name(to));
        to = SESS_CLOSING;
    }
    session_counts_move(&s->relay->counts, from, to);
    s->state = to;
    sync_busy(s);
    if (forbidden)
        free_later(s);
}

static struct session **cancel_bucket(struct relay *relay, uint32_t key)
{
    return &relay->cancel_index[key & (RELAY_CANCEL_BUCKETS - 1)];
}

static void cancel_index_add(struct session *s)
{
    struct session **b = cancel_bucket(s->relay, s->cancel_key);
    s->cancel_next = *b;
    *b = s;
}

static void cancel_index_remove(struct session *s)
{
    if (!s->cancel_key)
        return;
    for (struct session **p = cancel_bucket(s->relay, s->cancel_key); *p; p = &(*p)->cancel_next)
        if (*p == s) {
            *p = s->cancel_next;
            s->cancel_next = NULL;
            s->cancel_key = 0;
            return;
        }
    assert(!"session missing from the cancel index");
}

/* "host:port", or "unix" (and 1) for anything but IPv4 and IPv6. */
static int format_addr(char *out, size_t cap, const struct sockaddr *addr)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (addr->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
    } else if (addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
    } else {
        snprintf(out, cap, "unix");
        return 1;
    }
    snprintf(out, cap, "%s:%d", host, port);
    return 0;
}


/* What a connection's first bytes may be: a PROXY protocol header only
 * from a source in proxy_protocol_trusted, and from such a source they
 * must be one (as HAProxy's accept-proxy has it), so that a client the
 * balancer passes through can never pick its own address. */
enum { PROXY_HEADER_REFUSED = 0, PROXY_HEADER_REQUIRED, PROXY_HEADER_READ };

static void set_nodelay(evutil_socket_t fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Like Postgres's authentication_timeout: a peer that never finishes its
 * startup packet, its TLS handshake or its login is not kept forever.
 * Before a startup packet the connection just closes, as Postgres does;
 * after it the client hears why. */
static void login_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct session *s = arg;
    if (s->state == SESS_READY || s->state == SESS_CLOSING)
        return;
    log_info("session %llu (%s): no login within %d s (state %s); closing", (unsigned long long)s->id,
             addr_of(s), s->relay->cfg.client_login_timeout_ms / 1000, session_state_name(s->state));
    if (s->state == SESS_STARTUP || s->state == SESS_TLS_ACCEPT)
        session_fail_silently(s);
    else
        session_fail(s, SQLSTATE_QUERY_CANCELED, "canceling authentication due to timeout");
}

/* -1 when the timer cannot be set: a login without its bound could hold
 * the connection forever, so the caller closes it instead. */
static PGT_MUSTCHECK int start_login_timer(struct session *s)
{
    int ms = s->relay->cfg.client_login_timeout_ms;
    if (ms <= 0)
        return 0;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    if (!(s->login_timer = evtimer_new(s->relay->base, login_timeout_cb, s)) || evtimer_add(s->login_timer, &tv) != 0) {
        log_error("session %llu (%s): could not set the login timer; closing", (unsigned long long)s->id,
                  addr_of(s));
        return -1;
    }
    return 0;
}

static void stop_login_timer(struct session *s)
{
    if (s->login_timer)
        event_free(s->login_timer);
    s->login_timer = NULL;
}

void session_accept(struct relay *relay, evutil_socket_t fd, const struct sockaddr *addr, int addrlen)
{
    assert(relay && addr && fd >= 0);
    (void)addrlen;
    char where[sizeof ((struct session_extra *)0)->client_addr];
    int is_unix = format_addr(where, sizeof where, addr);
    struct session *s = calloc(1, sizeof *s + strlen(where) + 1); /* the address sized to fit */
    struct sbuf *sb = s ? sbuf_new(relay->base, fd, &client_ops, s, relay->cfg.buffer_bytes / 2) : NULL;
    if (!sb) {
        log_error("out of memory accepting a connection");
        evutil_closesocket(fd);
        free(s);
        return;
    }
    s->relay = relay;
    s->id = ++relay->next_session_id;
    s->waiter.ops = &waiter_ops;
    s->client = sb;
    s->connected_us = relay_now_us(relay);
    tracker_init(&s->tracker);
    strcpy(s->addr, where);
    s->is_unix = is_unix;
    if (relay->cfg.nproxy_trusted && config_cidr_match(relay->cfg.proxy_trusted, relay->cfg.nproxy_trusted, addr))
        s->proxy_header = PROXY_HEADER_REQUIRED;
    if (!s->is_unix)
        set_nodelay(fd);
    s->next = relay->sessions;
    if (relay->sessions)
        relay->sessions->prev = s;
    relay->sessions = s;
    session_counts_enter(&relay->counts, SESS_STARTUP);
    relay->metrics.connections_total++;
    if (relay_session_count(relay) > (uint32_t)relay->cfg.max_client_conn) {
        session_fail(s, SQLSTATE_TOO_MANY_CONNECTIONS, "no more connections allowed (max_client_conn %d)",
                     relay->cfg.max_client_conn);
        return;
    }
    if (start_login_timer(s) != 0)
        session_fail_silently(s);
}

void session_free(struct session *s)
{
    assert(s && s->relay && session_state_valid((int)s->state));
    struct relay *relay = s->relay;
    if (s->connecting)
        upstream_connect_cancel(s->connecting);
    sbuf_free(s->client);
    drop_server(s);
    if (s->extra && s->extra->free_ev)
        event_free(s->extra->free_ev);
    if (s->extra && s->extra->fail_ev)
        event_free(s->extra->fail_ev);
    if (s->login_timer)
        event_free(s->login_timer);
    if (s->prev)
        s->prev->next = s->next;
    else
        relay->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    if (s->busy)
        session_counts_busy(&relay->counts, 0);
    session_counts_leave(&relay->counts, s->state);
    cancel_index_remove(s);
    if (s->awaiting_role)
        auth_lookup_cancel(relay->auth_lookup, s);
    startup_set_put(relay, s->startup);
    if (s->extra) {
        free(s->extra->fail_message);
        free(s->extra->routed_schema);
        free(s->extra);
    }
    unnamed_statement_free(&s->unnamed);
    carried_sets_free(&s->carried);
    shared_params_put(s->params);
    auth_free(s->auth);
    shared_creds_put(s->creds);
    prepared_free_all(&s->prepared);
    free(s);
    relay_boundary_reached(relay);
    relay_session_closed(relay);
}

/* Writes an ErrorResponse to the client (which must still be connected). */
static void send_error(struct session *s, const char *severity, const char *sqlstate, const char *msg)
{
    uint8_t buf[1024];
    size_t n = proto_format_error(buf, sizeof buf, severity, sqlstate, msg);
    struct evbuffer *out = n && s->client ? sbuf_out(s->client) : NULL;
    if (out) {
        evbuffer_add(out, buf, n);
        sbuf_flush(s->client);
    }
}

static void free_now_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    session_free(arg);
}

/* Callers up the stack may still hold `s`: free it on the next loop turn. */
static void free_later(struct session *s)
{
    struct session_extra *x = extra(s);
    if (x && !x->free_ev)
        x->free_ev = evtimer_new(s->relay->base, free_now_cb, s);
    if (s->client)
        sbuf_pause_read(s->client);
    if (x && x->free_ev)
        event_active(x->free_ev, EV_TIMEOUT, 0);
    else
        log_error("session %llu: could not schedule its release", (unsigned long long)s->id);
}

static void close_with_error(struct session *s, const char *sqlstate, const char *msg);

void session_fail(struct session *s, const char *sqlstate, const char *fmt, ...)
{
    assert(s && sqlstate && fmt);
    if (s->state == SESS_CLOSING)
        return; /* the first reason is the one the client hears */
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* login failures are logged (and rate-limited) by the auth code */
    int auth_failure = strncmp(sqlstate, "28", 2) == 0 || strcmp(sqlstate, SQLSTATE_TOO_MANY_CONNECTIONS) == 0;
    log_msg(auth_failure ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO, "session %llu (%s): closing: %s [%s]",
            (unsigned long long)s->id, addr_of(s), msg, sqlstate);
    close_with_error(s, sqlstate, msg);
}

/* session_fail without the log line, which the caller has written (or
 * left out). */
static void close_with_error(struct session *s, const char *sqlstate, const char *msg)
{
    if (s->connecting) {
        upstream_connect_cancel(s->connecting);
        s->connecting = NULL;
    }
    drop_server(s);
    int can_tell_client = s->client && s->state != SESS_TLS_ACCEPT;
    session_set_state(s, SESS_CLOSING);
    if (!can_tell_client) {
        free_later(s);
        return;
    }
    send_error(s, "FATAL", sqlstate, msg);
    sbuf_pause_read(s->client);
    s->client->out_low = 0;
    /* client_drained frees the session once the error is on the wire */
    if (sbuf_pending_out(s->client) == 0)
        free_later(s);
}

/* For a connection that only came to send a CancelRequest, and for the
 * communication errors before a startup packet, which Postgres answers by
 * closing without a word. */
static void session_fail_silently(struct session *s)
{
    session_set_state(s, SESS_CLOSING);
    free_later(s);
}

static void delayed_failure_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct session *s = arg;
    session_fail(s, s->extra->fail_sqlstate, "%s", s->extra->fail_message);
}

void session_fail_after(struct session *s, int delay_ms, const char *sqlstate, const char *message)
{
    assert(s && s->client && sqlstate && message && delay_ms >= 0);
    struct session_extra *x = extra(s);
    if (!x) {
        session_fail(s, sqlstate, "%s", message);
        return;
    }
    snprintf(x->fail_sqlstate, sizeof x->fail_sqlstate, "%s", sqlstate);
    free(x->fail_message);
    x->fail_message = strdup(message);
    if (!x->fail_ev)
        x->fail_ev = evtimer_new(s->relay->base, delayed_failure_cb, s);
    if (!x->fail_ev || !x->fail_message) {
        session_fail(s, sqlstate, "%s", message);
        return;
    }
    struct timeval tv = {delay_ms / 1000, (delay_ms % 1000) * 1000};
    if (evtimer_add(x->fail_ev, &tv) != 0) {
        session_fail(s, sqlstate, "%s", message); /* at once rather than never */
        return;
    }
    sbuf_pause_read(s->client);
}

/* Auth "scram": the exchange failed; the client hears why, maybe late. */
static void fail_authentication(struct session *s)
{
    const struct auth_failure *f = s->auth ? auth_failure(s->auth) : NULL;
    if (!f)
        session_fail(s, SQLSTATE_CONNECTION_FAILURE, "out of memory");
    else if (f->delay_ms > 0)
        session_fail_after(s, f->delay_ms, f->sqlstate, f->message);
    else
        session_fail(s, f->sqlstate, "%s", f->message);
}

static void protocol_violation(struct session *s, const char *what)
{
    s->relay->metrics.protocol_errors++;
    session_fail(s, SQLSTATE_PROTOCOL_VIOLATION, "%s", what);
}

/* ---- startup: SSLRequest, GSSENCRequest, CancelRequest, StartupMessage ---- */

/* Protocol 1.x and 2.x clients read only the old error format: Postgres
 * answers them in it, and so do we, then close. */
static void refuse_old_protocol(struct session *s, const char *message)
{
    uint8_t buf[256];
    size_t n = proto_format_old_error(buf, sizeof buf, "FATAL", message);
    session_set_state(s, SESS_CLOSING);
    evbuffer_add(sbuf_out(s->client), buf, n); /* never released before a login */
    sbuf_flush(s->client);
    sbuf_pause_read(s->client);
    s->client->out_low = 0;
    if (sbuf_pending_out(s->client) == 0)
        free_later(s); /* else client_drained frees it */
}

/* A startup-phase packet refused as Postgres refuses the same bytes (see
 * struct startup_refusal): told to the client only when Postgres would
 * tell it. Such packets cost their source a token: past its limit the
 * connection just closes, and the log sums them up. */
static void refuse_startup_packet(struct session *s, const struct startup_refusal *why)
{
    s->relay->metrics.protocol_errors++;
    int replies = why->old_protocol || why->sqlstate;
    if (!source_limit_failure(s->relay, addr_of(s), SOURCE_BAD_STARTUP, 1, "session %llu (%s): closing%s: %s%s%s%s",
                              (unsigned long long)s->id, addr_of(s), replies ? "" : " without a reply",
                              why->message, why->sqlstate ? " [" : "", why->sqlstate ? why->sqlstate : "",
                              why->sqlstate ? "]" : "")) {
        session_fail_silently(s);
    } else if (why->old_protocol) {
        refuse_old_protocol(s, why->message);
    } else if (why->sqlstate) {
        close_with_error(s, why->sqlstate, why->message);
    } else {
        session_fail_silently(s);
    }
}

static void start_client_tls(struct session *s)
{
    SSL *ssl = SSL_new(s->relay->client_tls);
    if (!ssl) {
        session_fail(s, SQLSTATE_CONNECTION_FAILURE, "out of memory");
        return;
    }
    /* Bytes sent before the handshake would be trusted as if encrypted. */
    if (sbuf_start_tls(s->client, ssl, 1) != 0) {
        protocol_violation(s, "received unencrypted data after SSL request");
        return;
    }
    s->client_on_tls = 1;
    session_set_state(s, SESS_STARTUP);
}

static void on_upstream_ready(void *ctx, struct sbuf *sb, const char *error);
static uint32_t new_cancel_key(struct relay *relay);
static void cancel_index_add(struct session *s);
static void begin_pooled(struct session *s);

/* The CancelRequest went on and has been answered (or given up on):
 * Postgres, or the proxy it was forwarded to, closed the connection that
 * carried it, so the backend has been signalled. Only now is the client's
 * connection closed: clients wait for that close before sending their next
 * query, which a cancel still on its way would otherwise hit. */
static void cancel_answered(struct relay *relay, uint64_t waiter)
{
    for (struct session *s = relay->sessions; s; s = s->next) {
        if (s->id == waiter) {
            if (s->state == SESS_CANCEL_WAIT)
                session_fail_silently(s);
            return;
        }
    }
}

static void cancel_wait_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct session *s = arg;
    if (s->state != SESS_CANCEL_WAIT)
        return;
    log_info("session %llu (%s): cancel request not answered within %d ms; closing", (unsigned long long)s->id,
             addr_of(s), s->relay->cfg.cancel_wait_timeout_ms);
    session_fail_silently(s);
}

static void wait_for_cancel(struct session *s)
{
    session_set_state(s, SESS_CANCEL_WAIT);
    sbuf_pause_read(s->client); /* a CancelRequest is all a cancel connection says */
    stop_login_timer(s);
    int ms = s->relay->cfg.cancel_wait_timeout_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    /* Without its bound the connection could wait forever: it closes now
     * (the request is on its way regardless). */
    if (!(s->login_timer = evtimer_new(s->relay->base, cancel_wait_timeout_cb, s)) ||
        evtimer_add(s->login_timer, &tv) != 0) {
        log_error("session %llu (%s): could not set the cancel wait timer; closing", (unsigned long long)s->id,
                  addr_of(s));
        session_fail_silently(s);
    }
}

/* A CancelRequest: a source over its limit is closed before its key is
 * even looked at; otherwise the key names a session here or, in a fleet,
 * the proxy that issued it (peer.c); either way the connection stays open
 * until the request has been answered, as Postgres keeps it. */
static void handle_cancel_request(struct session *s, uint32_t pid, uint32_t key)
{
    struct relay *relay = s->relay;
    if (!source_limit_allows(relay, addr_of(s))) {
        session_fail_silently(s);
        return;
    }
    int sent = session_cancel(relay, pid, key, cancel_answered, s->id);
    if (!sent)
        sent = peer_forward_cancel(relay, pid, key, addr_of(s), cancel_answered, s->id);
    if (sent > 0) {
        wait_for_cancel(s);
        return;
    }
    if (!sent)
        source_limit_failure(relay, addr_of(s), SOURCE_CANCEL_UNKNOWN, 1,
                             "session %llu (%s): cancel request for an unknown session ignored",
                             (unsigned long long)s->id, addr_of(s));
    session_fail_silently(s);
}

/* Refuses a StartupMessage the proxy will not serve; 0 when it may go on. */
static int refuse_startup(struct session *s)
{
    const struct config *cfg = &s->relay->cfg;
    if (cfg->client_tls == CLIENT_TLS_REQUIRE && !s->client_on_tls && !s->is_unix) {
        session_fail(s, SQLSTATE_INVALID_AUTH_SPEC, "pgtandem requires TLS: connect with sslmode=require");
        return -1;
    }
    if (s->relay->shutting_down) {
        session_fail(s, SQLSTATE_CANNOT_CONNECT_NOW, "the proxy is shutting down");
        return -1;
    }
    return 0;
}

static void begin_upstream(struct session *s)
{
    session_set_state(s, SESS_CONNECTING);
    sbuf_pause_read(s->client);
    s->connecting = upstream_connect_start(s->relay, on_upstream_ready, s);
    if (!s->connecting) /* else the session would wait for nothing, forever */
        session_fail(s, SQLSTATE_CONNECTION_FAILURE, "out of memory");
}

/* The proxy's own SCRAM exchange with the client, against the users file
 * or what --auth-query answered (found: NULL when it was not asked). */
static int begin_client_auth(struct session *s, const struct auth_lookup_answer *found)
{
    struct auth_peer peer = {s->relay, s->client, param(s, "user"), addr_of(s), s->id,
                             s->client_on_tls, found != NULL,
                             found && found->outcome == LOOKUP_FOUND ? &found->verifier : NULL};
    if (auth_begin_client(&peer, &s->auth) != AUTH_FAILED)
        return 1;
    fail_authentication(s);
    return -1;
}

static void on_role_looked_up(void *ctx, const struct auth_lookup_answer *answer)
{
    struct session *s = ctx;
    s->awaiting_role = 0;
    if (answer->outcome == LOOKUP_FAILED) {
        session_fail(s, SQLSTATE_CONNECTION_FAILURE, "pgtandem: could not look up user \"%s\" (--auth-query): %s",
                     param(s, "user"), answer->why);
        return;
    }
    if (begin_client_auth(s, answer) == 1)
        sbuf_resume_read(s->client);
}

/* A user the users file does not hold is asked of the database when the
 * proxy has --auth-query (PgBouncer's order: auth_file first). */
static int look_up_role(struct session *s)
{
    const char *user = param(s, "user");
    if (!s->relay->auth_lookup || (s->relay->users && users_find(s->relay->users, user)))
        return begin_client_auth(s, NULL);
    struct auth_lookup_answer answer;
    int r = auth_lookup_user(s->relay->auth_lookup, user, on_role_looked_up, s, &answer);
    if (r < 0) {
        session_fail(s, SQLSTATE_CONNECTION_FAILURE, "out of memory");
        return -1;
    }
    if (r == 1)
        return begin_client_auth(s, &answer);
    s->awaiting_role = 1; /* the client waits for AuthenticationSASL: it sends nothing meanwhile */
    sbuf_pause_read(s->client);
    return 1;
}

/* Handles one complete startup-phase packet. Returns 0 to keep reading
 * startup packets, 1 when the session moved on, -1 when it is gone. */
static int handle_startup_packet(struct session *s, uint8_t *packet, uint32_t len)
{
    struct startup_refusal why;
    struct startup_packet sp;
    if (proto_parse_startup(packet, len, &sp, &why) != 0) {
        free(packet);
        refuse_startup_packet(s, &why);
        return -1;
    }
    if ((sp.code == PROTO_SSL_CODE || sp.code == PROTO_GSSENC_CODE) && s->client_on_tls) {
        /* Postgres negotiates encryption once; another request reads as a version number */
        free(packet);
        proto_refuse_protocol(&why, sp.code);
        refuse_startup_packet(s, &why);
        return -1;
    }
    if (sp.code == PROTO_SSL_CODE) {
        free(packet);
        int offer = s->relay->cfg.client_tls != CLIENT_TLS_DISABLE && !s->client_on_tls && !s->is_unix;
        evbuffer_add(sbuf_out(s->client), offer ? "S" : "N", 1);
        sbuf_flush(s->client);
        if (!offer)
            return 0;
        session_set_state(s, SESS_TLS_ACCEPT);
        sbuf_pause_read(s->client);
        s->client->out_low = 0;
        if (sbuf_pending_out(s->client) == 0)
            start_client_tls(s);
        return 1;
    }
    if (sp.code == PROTO_GSSENC_CODE) {
        free(packet);
        evbuffer_add(sbuf_out(s->client), "N", 1); /* no GSSAPI encryption: client falls back */
        sbuf_flush(s->client);
        return 0;
    }
    if (sp.code == PROTO_CANCEL_CODE) {
        free(packet);
        handle_cancel_request(s, sp.cancel_pid, sp.cancel_key);
        return 1;
    }
    /* an app-side pooler passes the database name on and drops options:
     * "appdb@NAME" declares release NAME where nothing else can */
    char *database_version = proto_startup_split_param(packet, &len, &sp, "database", '@');
    s->startup = startup_set_get(s->relay, packet, len, &sp, database_version);
    free(packet);
    if (!s->startup) {
        session_fail(s, SQLSTATE_CONNECTION_FAILURE, "out of memory");
        return -1;
    }
    const struct startup_packet *ssp = &s->startup->sp; /* sp pointed into the packet */
    if (proto_needs_negotiation(ssp)) {
        /* first, as Postgres sends it: the client goes on at 3.0, without
         * the options (the upstream never sees them: we speak 3.0 there) */
        proto_add_negotiate_version(sbuf_out(s->client), ssp);
        sbuf_flush(s->client);
        log_debug("session %llu (%s): protocol %u.%u asked with %d protocol option%s; serving 3.0",
                  (unsigned long long)s->id, addr_of(s), ssp->requested >> 16, ssp->requested & 0xffff, ssp->npq,
                  ssp->npq == 1 ? "" : "s");
    }
    if (refuse_startup(s) != 0)
        return -1;
    if (!s->relay->cfg.auth_scram) {
        begin_upstream(s);
        return 1;
    }
    session_set_state(s, SESS_CLIENT_AUTH);
    return look_up_role(s);
}

/* The connection's first bytes, before any startup packet: a PROXY
 * protocol header where one must or must not be. 1 to go on with the
 * startup packets, 0 to wait for more bytes, -1 when the session is gone. */
static int read_proxy_header(struct session *s)
{
    struct evbuffer *in = s->client->in;
    uint8_t buf[PROXY_HEADER_MAX];
    size_t avail = evbuffer_get_length(in);
    size_t n = avail < sizeof buf ? avail : sizeof buf;
    if (!n)
        return 0;
    evbuffer_copyout(in, buf, n);
    struct proxy_header h;
    enum proxy_header_result r = proxy_header_parse(buf, n, &h);
    if (r == PROXY_HEADER_NEED_MORE)
        return 0;
    struct startup_refusal why = {SQLSTATE_PROTOCOL_VIOLATION, 0, ""};
    if (s->proxy_header == PROXY_HEADER_REFUSED) {
        if (r == PROXY_HEADER_NONE) {
            s->proxy_header = PROXY_HEADER_READ;
            return 1;
        }
        snprintf(why.message, sizeof why.message, "PROXY protocol header refused: %s is not in proxy_protocol_trusted",
                 addr_of(s));
    } else if (r == PROXY_HEADER_NONE) {
        snprintf(why.message, sizeof why.message,
                 "a connection from %s (in proxy_protocol_trusted) must start with a PROXY protocol header",
                 addr_of(s));
    } else if (r == PROXY_HEADER_BAD) {
        snprintf(why.message, sizeof why.message, "invalid %s", h.why);
    }
    if (why.message[0]) {
        refuse_startup_packet(s, &why);
        return -1;
    }
    evbuffer_drain(in, h.length);
    s->proxy_header = PROXY_HEADER_READ;
    if (h.has_source) {
        struct session_extra *x = extra(s);
        if (!x) {
            session_fail(s, SQLSTATE_CONNECTION_FAILURE, "out of memory");
            return -1;
        }
        snprintf(x->proxied_by, sizeof x->proxied_by, "%s", s->addr);
        s->is_unix = format_addr(x->client_addr, sizeof x->client_addr, (const struct sockaddr *)&h.source);
        log_debug("session %llu: PROXY protocol v%d header from %s: the client is %s", (unsigned long long)s->id,
                  h.version, x->proxied_by, addr_of(s));
    }
    return 1;
}

static void read_startup(struct session *s)
{
    struct evbuffer *in = s->client->in;
    if (s->proxy_header != PROXY_HEADER_READ && read_proxy_header(s) <= 0)
        return;
    for (;;) {
        uint8_t head[4];
        uint32_t len;
        size_t avail = evbuffer_get_length(in);
        evbuffer_copyout(in, head, avail < 4 ? avail : 4);
        enum header_result hr = proto_read_startup_length(head, avail, &len);
        if (hr == HEADER_NEED_MORE)
            return;
        if (hr == HEADER_BAD_LENGTH) {
            refuse_startup_packet(s, &(struct startup_refusal){NULL, 0, "invalid length of startup packet"});
            return;
        }
        if (avail < len)
            return;
        uint8_t *packet = malloc(len);
        if (!packet) {
            session_fail(s, SQLSTATE_CONNECTION_FAILURE, "out of memory");
            return;
        }
        evbuffer_remove(in, packet, len);
        if (handle_startup_packet(s, packet, len) != 0)
            return;
    }
}

/* ---- transaction pooling: login ---- */

/* The pool this session's next transaction runs in: its version route may
 * have changed since the last one. */
static struct pool *current_pool(struct session *s)
{
    const char *user = param(s, "user");
    const char *db = param(s, "database");
    if (!s->startup->pool_options)
        return NULL;
    struct pool *p = pool_for(s->relay, db && *db ? db : user, user, s->startup->pool_options,
                              relay_version_schema(s->relay, s->startup->version));
    if (p && pool_wants_credentials(p))
        pool_take_credentials(p, s->creds ? &s->creds->c : NULL);
    return p;
}

/* The client proved its password: of the exchange (over a kilobyte, kept
 * for the whole session otherwise) only the credentials a pool made later
 * logs in with are kept, shared with the clients of the same startup
 * parameters who proved the same. 0, or -1 out of memory. */
static int keep_only_credentials(struct session *s)
{
    struct auth_credentials c;
    if (auth_credentials_copy(s->auth, &c) != 0 || !(s->creds = startup_set_creds(s->startup, &c)))
        return -1;
    auth_free(s->auth);
    s->auth = NULL;
    return 0;
}

static void add_parameter_status(struct evbuffer *out, const char *key, const char *value)
{
    uint8_t head[5] = {'S'};
    proto_put_u32(head + 1, (uint32_t)(4 + strlen(key) + 1 + strlen(value) + 1));
    evbuffer_add(out, head, sizeof head);
    evbuffer_add(out, key, strlen(key) + 1);
    evbuffer_add(out, value, strlen(value) + 1);
}

/* What Postgres says after AuthenticationOk, said by the proxy: the pool's
 * ParameterStatus messages (with this client's own values of the tracked
 * parameters), a BackendKeyData of ours and ReadyForQuery. */
static void welcome_client(struct session *s, struct pool *p)
{
    struct evbuffer *out = sbuf_out(s->client);
    if (!out || !(s->params = startup_set_params(s->startup, &p->welcome))) {
        session_fail(s, SQLSTATE_CONNECTION_FAILURE, "out of memory");
        return;
    }
    const struct param_values *mine = &s->params->v;
    size_t total = evbuffer_get_length(p->welcome_msgs);
    const uint8_t *all = evbuffer_pullup(p->welcome_msgs, -1);
    for (size_t at = 0; at + PROTO_HEADER_LEN <= total;) {
        uint32_t len = proto_get_u32(all + at + 1) + 1;
        const char *key = (const char *)all + at + PROTO_HEADER_LEN;
        int i = pin_tracked_index(key);
        if (i >= 0 && mine->known[i])
            add_parameter_status(out, key, mine->value[i]);
        else
            evbuffer_add(out, all + at, len);
        at += len;
    }
    s->cancel_pid = (uint32_t)(s->id & 0x7fffffff);
    s->cancel_key = new_cancel_key(s->relay);
    if (!s->cancel_key) {
        session_fail(s, SQLSTATE_INTERNAL_ERROR, "could not generate random cancel key");
        return;
    }
    cancel_index_add(s);
    uint8_t key_msg[13] = {'K'}, ready[6] = {'Z', 0, 0, 0, 5, 'I'};
    proto_put_u32(key_msg + 1, 12);
    proto_put_u32(key_msg + 5, s->cancel_pid);
    proto_put_u32(key_msg + 9, s->cancel_key);
    evbuffer_add(out, key_msg, sizeof key_msg);
    evbuffer_add(out, ready, sizeof ready);
    session_set_state(s, SESS_READY);
    stop_login_timer(s);
    sbuf_resume_read(s->client);
    sbuf_flush(s->client);
    release_idle_buffers(s); /* what is not on the wire yet keeps them */
    log_debug("session %llu ready (transaction pooling): user=%s database=%s", (unsigned long long)s->id,
              p->user, p->database);
}

/* The client proved its password: it is told so, and welcomed once its
 * pool knows what a login says (after the pool's first server login). */
static void begin_pooled(struct session *s)
{
    if (auth_finish_client(s->auth) != 0 || keep_only_credentials(s) != 0) {
        session_fail(s, SQLSTATE_CONNECTION_FAILURE, "out of memory");
        return;
    }
    struct pool *p = current_pool(s);
    if (!p) {
        session_fail(s, SQLSTATE_CONNECTION_FAILURE, "out of memory");
        return;
    }
    if (p->welcome_ready) {
        welcome_client(s, p);
        return;
    }
    session_set_state(s, SESS_CONNECTING);
    sbuf_pause_read(s->client);
    struct pool_server *ps = pool_acquire(p, &s->waiter);
    if (ps)
        server_lent(&s->waiter, ps);
}

/* Client messages while the proxy authenticates it: whole 'p' messages. */
static void read_client_auth(struct session *s)
{
    struct evbuffer *in = s->client->in;
    while (s->state == SESS_CLIENT_AUTH) {
        uint8_t head[PROTO_HEADER_LEN];
        size_t avail = evbuffer_get_length(in);
        if (avail < PROTO_HEADER_LEN)
            return;
        evbuffer_copyout(in, head, sizeof head);
        struct msg_header h;
        if (proto_read_header(head, avail, PROTO_MAX_AUTH_MESSAGE, &h) != HEADER_OK) {
            protocol_violation(s, "invalid authentication message length");
            return;
        }
        if (avail < h.length + 1u)
            return;
        uint8_t *msg = evbuffer_pullup(in, h.length + 1);
        enum auth_result r = auth_client_message(s->auth, msg, h.length + 1);
        evbuffer_drain(in, h.length + 1);
        if (r == AUTH_FAILED)
            fail_authentication(s);
        else if (r == AUTH_DONE && pooled(s))
            begin_pooled(s);
        else if (r == AUTH_DONE)
            begin_upstream(s);
        if (r != AUTH_CONTINUE)
            return;
    }
}

/* Rebuilds the StartupMessage for the upstream from the client's parameters.
 * A session that declared the version of the migration in progress gets
 * that migration's version schema first on its search_path. */
static PGT_MUSTCHECK int send_startup_upstream(struct session *s)
{
    struct evbuffer *out = sbuf_out(s->backend);
    struct evbuffer *params = out ? evbuffer_new() : NULL;
    if (!params)
        return -1;
    const struct startup_packet *sp = &s->startup->sp;
    char route[256] = "";
    const char *schema = relay_version_schema(s->relay, s->startup->version);
    s->route_gen = s->relay->route.gen;
    if (set_routed_schema(s, schema) != 0)
        s->route_gen--; /* routed again at the first boundary */
    const char *opts = startup_param(sp, "options");
    const char *endpoint = s->relay->cfg.neon_endpoint;
    if (endpoint && !(opts && strstr(opts, "endpoint=")))
        snprintf(route, sizeof route, " endpoint=%s", endpoint); /* Neon routes on it without SNI */
    /* quoted: an unquoted name would be folded to lower case; the client's
     * own path after it (a search_path parameter would be applied after
     * the options and undo the route: it goes into the route instead) */
    char own[PIN_SEARCH_PATH_MAX];
    int has_own = schema ? search_path_of_startup(sp, own, sizeof own) : 0;
    if (schema && mig_search_path_option(route + strlen(route), sizeof route - strlen(route), schema,
                                         has_own > 0 ? own : NULL) != 0)
        log_warn("session %llu: version schema name (with the client's search_path) too long to route",
                 (unsigned long long)s->id);
    int saw_options = 0;
    const char *value;
    for (const char *k = startup_next_param(sp, NULL, &value); k; k = startup_next_param(sp, k, &value)) {
        int is_options = strcmp(k, "options") == 0;
        saw_options |= is_options;
        if (schema && !strcasecmp(k, "search_path"))
            continue;
        proto_add_startup_param(params, k, value, is_options && route[0] ? route : NULL);
    }
    if (!saw_options && route[0])
        proto_add_startup_param(params, "options", "", route);
    proto_add_startup(out, params);
    evbuffer_free(params);
    sbuf_flush(s->backend);
    return 0;
}

static void on_upstream_ready(void *ctx, struct sbuf *sb, const char *error)
{
    struct session *s = ctx;
    s->connecting = NULL;
    if (!sb) {
        s->relay->metrics.connections_failed++;
        session_fail(s, SQLSTATE_CONNECTION_FAILURE, "%s", error);
        return;
    }
    s->backend = sb;
    sbuf_set_ops(sb, &server_ops, s);
    sb->out_low = s->relay->cfg.buffer_bytes / 2;
    if (send_startup_upstream(s) != 0) {
        session_fail(s, SQLSTATE_CONNECTION_FAILURE, "out of memory");
        return;
    }
    session_set_state(s, s->relay->cfg.auth_scram ? SESS_UPSTREAM_LOGIN : SESS_AUTH);
    sbuf_resume_read(s->client);
    relay_client_to_server(s); /* anything the client already sent */
}

/* ---- relay ---- */

/* Terminate is never held: a client leaving cannot start a transaction.
 * An expired fleet lease holds like a pause (relay_control.h: relay_set_lease). */
static int paused_hold(struct session *s, uint8_t type)
{
    /* The clock is read only at a boundary, not for every message. */
    return s->state == SESS_READY && type != 'X' && tracker_may_hold_next(&s->tracker) &&
           (s->relay->pause.paused || relay_lease_expired(s->relay));
}

/* Moves up to `want` bytes of the current message; returns bytes moved. */
static size_t pass_bytes(struct evbuffer *in, struct evbuffer *out, uint32_t *remaining)
{
    size_t avail = evbuffer_get_length(in);
    size_t n = avail < *remaining ? avail : *remaining;
    if (n == 0)
        return 0;
    int moved = evbuffer_remove_buffer(in, out, n);
    if (moved <= 0)
        return 0;
    *remaining -= (uint32_t)moved;
    return (size_t)moved;
}

/* One direction of the relay: where bytes come from and go to, and the
 * state of the message being passed through. */
struct relay_dir {
    struct sbuf *from, *to;
    uint32_t *remaining;  /* bytes of the current message still to pass */
    uint8_t *blocked;     /* waiting for `to` to drain */
    uint8_t *discard;     /* drop the current message instead (may be NULL) */
    uint64_t *bytes, *metric;
    uint32_t max_length;
};

/* Passes the rest of the current message, then looks at the next header.
 * Returns 1 with *h filled when a message starts here and `to` has room,
 * 0 to wait for more bytes or for `to` to drain, -1 on a bad length. */
static int next_message(struct session *s, struct relay_dir *d, struct msg_header *h, size_t *avail)
{
    struct evbuffer *in = d->from->in, *out = sbuf_out(d->to);
    if (!in || !out) /* nothing read since the buffers were released; or out of memory, and `to` fails */
        return 0;
    if (*d->remaining && d->discard && *d->discard) {
        size_t n = evbuffer_get_length(in) < *d->remaining ? evbuffer_get_length(in) : *d->remaining;
        evbuffer_drain(in, n);
        *d->remaining -= (uint32_t)n;
        if (*d->remaining)
            return 0;
        *d->discard = 0;
    } else if (*d->remaining) {
        size_t n = pass_bytes(in, out, d->remaining);
        *d->bytes += n;
        *d->metric += n;
        if (*d->remaining)
            return 0;
    }
    if (sbuf_pending_out(d->to) >= s->relay->cfg.buffer_bytes) {
        *d->blocked = 1;
        sbuf_pause_read(d->from);
        sbuf_notify_when_drained(d->to);
        return 0;
    }
    uint8_t head[PROTO_HEADER_LEN];
    *avail = evbuffer_get_length(in);
    if (*avail < PROTO_HEADER_LEN)
        return 0;
    evbuffer_copyout(in, head, PROTO_HEADER_LEN);
    return proto_read_header(head, *avail, d->max_length, h) == HEADER_OK ? 1 : -1;
}

static void note_client_message(struct session *s, uint8_t type)
{
    if (s->tracker.pending_rfq == 0 && !s->tracker.mid_unit)
        s->unit_start_us = relay_now_us(s->relay);
    tracker_client_message(&s->tracker, type);
    sync_busy(s);
}

/* Named Parse and Close messages update the prepared-statement registry.
 * Returns -1 when the whole message is not buffered yet. */
static int track_statement(struct session *s, struct evbuffer *in, const struct msg_header *h, size_t avail)
{
    uint32_t total = h->length + 1;
    if ((h->type != 'P' && h->type != 'C') || total > PREPARED_MAX_MESSAGE)
        return 0;
    if (avail < PROTO_HEADER_LEN + 1)
        return -1;
    uint8_t first[PROTO_HEADER_LEN + 1];
    evbuffer_copyout(in, first, sizeof first);
    if (h->type == 'P' && first[PROTO_HEADER_LEN] == '\0')
        return 0; /* unnamed: nothing to remember */
    if (avail < total)
        return -1;
    const uint8_t *msg = evbuffer_pullup(in, total);
    if (h->type == 'P')
        prepared_remember(&s->prepared, msg, total);
    else
        prepared_forget_closed(&s->prepared, msg, total);
    return 0;
}

/* A simple Query of the proxy's own, sent ahead of whatever the client
 * sends next; its answers up to its ReadyForQuery are swallowed. */
static void inject_query(struct session *s, const char *sql)
{
    struct evbuffer *out = sbuf_out(s->backend);
    if (!out)
        return; /* the server fails, and the session with it */
    proto_add_query(out, sql);
    s->swallow_rfq++;
}

/* The route changed since this session's search_path was set (a migration
 * started, its new shape appeared, it ended): just before its next
 * transaction, a SET search_path to the schema it should see now and its
 * named statements prepared again under it, all answers swallowed, so
 * neither a cached plan nor `SELECT *` changes shape under the client. Not
 * at a boundary (a pipeline in flight, a transaction open) it waits for
 * the next one. A route that ended needs nothing: the schema it named is
 * gone, and Postgres skips a missing schema on the search_path. */
static void follow_route(struct session *s)
{
    if (s->state != SESS_READY || !s->backend || !tracker_at_boundary(&s->tracker))
        return;
    s->route_gen = s->relay->route.gen;
    const char *want = relay_version_schema(s->relay, s->startup->version);
    const char *routed = s->extra ? s->extra->routed_schema : NULL;
    if (!want || (routed && !strcmp(want, routed)))
        return;
    char own[PIN_SEARCH_PATH_MAX];
    int has_own = search_path_of_startup(&s->startup->sp, own, sizeof own);
    char *sql = has_own > 0 ? mig_search_path_set_config(want, own) : mig_search_path_sql(want);
    struct evbuffer *out = sbuf_out(s->backend);
    if (!sql || !out || set_routed_schema(s, want) != 0) {
        free(sql);
        s->route_gen--; /* tried again at the next boundary */
        return;
    }
    inject_query(s, sql);
    if (prepared_write_reprepare(s->prepared, out))
        s->swallow_rfq++;
    free(sql);
    log_debug("session %llu: routed to %s", (unsigned long long)s->id, want);
}

/* A pause (or an expired fleet lease) holds the client's next message.
 * -1 when the session was failed instead (the fence is overdue). */
static int hold_message(struct session *s)
{
    if (relay_fence_overdue(s->relay)) {
        session_fail(s, SQLSTATE_ADMIN_SHUTDOWN, "%s", s->relay->fence_error);
        return -1;
    }
    if (!s->holding) {
        s->holding = 1;
        s->relay->pause.held_messages++;
    }
    /* Reading goes on, so a client that leaves while held is noticed and
     * its session freed at once; past one buffer the held bytes stay in
     * the kernel. */
    if (sbuf_pending_in(s->client) >= s->relay->cfg.buffer_bytes)
        sbuf_pause_read(s->client);
    return 0;
}

/* ---- transaction pooling: lending ---- */

static void pin(struct session *s, const char *why);

/* SET for each tracked parameter whose value on the lent server is not
 * the client's, sent ahead of the client's transaction, answers swallowed
 * (their ParameterStatus still noted: see note_parameter). */
static int param_differs(const struct session *s, int i)
{
    const struct param_values *have = &s->lent->params, *want = &s->params->v;
    return want->known[i] && !(have->known[i] && !strcmp(have->value[i], want->value[i]));
}

static int params_differ(const struct session *s)
{
    for (int i = 0; i < PIN_NTRACKED; i++)
        if (param_differs(s, i))
            return 1;
    return carried_sets_differ(&s->lent->carried, &s->carried, s->lent->pool->schema);
}

static void sync_params(struct session *s)
{
    if (!s->params || !params_differ(s)) /* the usual case: nothing to say, nothing allocated */
        return;
    struct evbuffer *sql = evbuffer_new();
    if (!sql)
        return;
    if (carried_sets_sync(&s->lent->carried, &s->carried, s->lent->pool->schema, sql) != 0)
        pin(s, "out of memory carrying its SETs");
    for (int i = 0; i < PIN_NTRACKED; i++) {
        if (!param_differs(s, i))
            continue;
        evbuffer_add_printf(sql, "SET %s TO '", PIN_TRACKED_PARAMS[i]);
        for (const char *v = s->params->v.value[i]; *v; v++) {
            if (*v == '\'')
                evbuffer_add(sql, "'", 1); /* quoted as a literal: '' */
            evbuffer_add(sql, v, 1);
        }
        evbuffer_add(sql, "';", 2);
    }
    if (evbuffer_get_length(sql)) {
        evbuffer_add(sql, "", 1);
        inject_query(s, (const char *)evbuffer_pullup(sql, -1));
    }
    evbuffer_free(sql);
}

static void attach_server(struct session *s, struct pool_server *ps)
{
    s->lent = ps;
    s->backend = ps->sb;
    s->upstream_pid = ps->pid;
    s->upstream_key = ps->key;
    s->backend_pid = ps->backend_pid;
    sbuf_set_ops(ps->sb, &server_ops, s);
    sbuf_resume_read(ps->sb);
    s->swallow_rfq += ps->owed_rfq; /* our Close messages sent while it was idle */
    ps->owed_rfq = 0;
    reply_queue_reset(&ps->replies);
    s->unnamed.on_server = 0; /* it may have another borrower's */
    sync_params(s);
}

#define SESSION_OF(w) ((struct session *)((char *)(w) - offsetof(struct session, waiter)))

/* No server for a session that waited (timeout, a login that failed): the
 * client hears why and the session closes. */
static void server_not_lent(struct pool_waiter *w, const char *sqlstate, const char *message)
{
    struct session *s = SESSION_OF(w);
    if (s->state == SESS_CLOSING)
        return;
    /* logged at info even as 53300: a pool that cannot serve is the operator's business */
    log_session(LOG_LEVEL_INFO, s->id, "session %llu (%s): closing: %s [%s]", (unsigned long long)s->id,
                addr_of(s), message, sqlstate);
    close_with_error(s, sqlstate, message);
}

/* The pool lends `ps` to a session that waited for it. */
static void server_lent(struct pool_waiter *w, struct pool_server *ps)
{
    struct session *s = SESSION_OF(w);
    attach_server(s, ps);
    if (s->state == SESS_CONNECTING) { /* the pool's first login: the client can be welcomed now */
        s->lent = NULL;
        s->backend = NULL;
        pool_release(ps, 1);
        welcome_client(s, ps->pool);
        return;
    }
    relay_client_to_server(s);
}

/* Between transactions: the client's next message needs a server. 1 when
 * one is lent now, 0 when the session waits for one, holds or ends. */
static int borrow_for_next_message(struct session *s)
{
    uint8_t type;
    if (s->waiter.in || !sbuf_pending_in(s->client) || evbuffer_copyout(s->client->in, &type, 1) != 1)
        return 0;
    if (type == 'X') { /* Terminate: nothing to lend for, and a pooled server must not see it */
        session_fail_silently(s);
        return 0;
    }
    if (paused_hold(s, type)) {
        hold_message(s);
        return 0;
    }
    struct pool *p = current_pool(s);
    if (!p) {
        session_fail(s, SQLSTATE_CONNECTION_FAILURE, "out of memory");
        return 0;
    }
    struct pool_server *ps = pool_acquire(p, &s->waiter);
    if (!ps)
        return 0;
    attach_server(s, ps);
    return 1;
}

/* At a transaction boundary with nothing of ours or the client's in
 * flight, the server goes back to the pool; a next transaction the client
 * already sent borrows again at once. */
static void give_back_at_boundary(struct session *s)
{
    if (!s->lent || s->pinned || s->state != SESS_READY || !tracker_at_boundary(&s->tracker) ||
        s->swallow_rfq || s->s2c_remaining || s->c2s_remaining || !reply_queue_empty(&s->lent->replies))
        return;
    struct pool_server *ps = s->lent;
    s->lent = NULL;
    s->backend = NULL;
    s->upstream_pid = s->upstream_key = s->backend_pid = 0;
    s->s2c_blocked = 0;
    if (s->c2s_blocked) {
        s->c2s_blocked = 0;
        sbuf_resume_read(s->client);
    }
    pool_release(ps, 1);
    if (!s->holding && sbuf_pending_in(s->client))
        relay_client_to_server(s);
    if (!s->lent && !s->waiter.in && s->state == SESS_READY)
        release_idle_buffers(s);
}

/* Replies the proxy owes the client are written when nothing of the
 * server's is on its way to the client before them; 1 when any was (the
 * caller flushes the client once, after its loop). */
static int answer_due_now(struct session *s)
{
    if (s->s2c_remaining && !s->s2c_discard)
        return 0;
    struct evbuffer *out = sbuf_out(s->client);
    return out ? stmt_map_answer_due(&s->lent->replies, out) : 0;
}

/* The client's next message through the statement map; a failure ends the
 * session with what the map says. */
static enum stmt_map_result map_statement(struct session *s, struct evbuffer *in, const struct msg_header *h,
                                          size_t avail)
{
    struct stmt_map m = {.registry = &s->prepared, .replies = &s->lent->replies, .server = s->lent,
                         .unnamed = &s->unnamed};
    enum stmt_map_result r = stmt_map_client_message(&m, in, h, avail);
    if (r == STMT_FAILED)
        session_fail(s, m.sqlstate, "%s", m.error);
    else if (r == STMT_STREAM_REST)
        s->c2s_remaining = m.rest;
    return r;
}

static void pin(struct session *s, const char *why)
{
    struct session_extra *x = extra(s);
    s->pinned = 1; /* without its reason when out of memory: pinned all the same */
    if (x)
        snprintf(x->pin_reason, sizeof x->pin_reason, "%s", why);
    /* from now on routed like a session-mode session (follow_route) */
    s->route_gen = s->relay->route.gen;
    if (set_routed_schema(s, s->lent->pool->schema) != 0)
        s->route_gen--;
    log_info("session %llu (%s): pinned to its server connection for the rest of the session: %s",
             (unsigned long long)s->id, addr_of(s), why);
}

#define PIN_MAX_INSPECT (1u << 20) /* larger statements pin rather than being buffered whole */

/* Transaction pooling: a statement that leaves state on the server the
 * pool cannot carry pins the client before it runs. -1 while the message
 * is not buffered whole. */
static int check_pin(struct session *s, struct evbuffer *in, const struct msg_header *h, size_t avail)
{
    uint32_t total = h->length + 1;
    if (h->type == 'F') {
        pin(s, "function call (fast path)");
        return 0;
    }
    if (h->type != 'Q' && h->type != 'P')
        return 0;
    if (total > PIN_MAX_INSPECT) {
        pin(s, "statement too large to inspect");
        return 0;
    }
    if (avail < total)
        return -1;
    const char *body = (const char *)evbuffer_pullup(in, total) + PROTO_HEADER_LEN;
    size_t len = total - PROTO_HEADER_LEN;
    if (h->type == 'P') { /* the query after the statement's name */
        size_t name_len = strnlen(body, len);
        body += name_len + 1;
        len = len > name_len + 1 ? len - name_len - 1 : 0;
    }
    len = strnlen(body, len);
    struct pin_carry carry;
    if (s->tracker.tx_status == 'I' && pin_carried_set(body, len, &carry)) {
        /* on the server it runs on now, as written (so a search_path
         * without the route's schema is set right before the client's next
         * transaction: carried_sets_differ), and on every one it borrows next */
        const char *value = carry.value[0] ? carry.value : NULL;
        if (carried_sets_apply(&s->carried, carry.name, carry.reset, value, body, len) != 0 ||
            carried_sets_apply(&s->lent->carried, carry.name, carry.reset, NULL, body, len) != 0)
            pin(s, "too many SETs to carry");
        return 0;
    }
    char why[64];
    if (pin_reason_for_sql(body, len, why, sizeof why) != 0)
        pin(s, why);
    return 0;
}

static void relay_client_to_server(struct session *s)
{
    if (s->state == SESS_READY && pooled(s) && !s->backend && !borrow_for_next_message(s))
        return;
    if (!s->backend || s->state == SESS_CLOSING || s->state == SESS_CONNECTING || s->state == SESS_CLIENT_AUTH ||
        s->state == SESS_UPSTREAM_LOGIN)
        return;
    struct evbuffer *in = s->client->in; /* NULL (nothing read since it was released): next_message says so */
    struct relay_dir d = {s->client, s->backend, &s->c2s_remaining, &s->c2s_blocked, NULL, &s->bytes_in,
                          &s->relay->metrics.bytes_from_client, s->relay->cfg.max_message_bytes};
    int answered = 0;
    for (;;) {
        struct msg_header h;
        size_t avail;
        int r = next_message(s, &d, &h, &avail);
        if (r < 0) {
            protocol_violation(s, h.length < 4 ? "invalid message length"
                                               : "message exceeds the maximum message size");
            return;
        }
        if (r == 0)
            break;
        if (paused_hold(s, h.type)) {
            if (hold_message(s) != 0)
                return;
            break;
        }
        if (s->lent && h.type == 'X') { /* the pooled server stays logged in */
            session_fail_silently(s);
            return;
        }
        if (s->route_gen != s->relay->route.gen && h.type != 'X' && (!s->lent || s->pinned))
            follow_route(s);
        if (s->state == SESS_READY && s->lent) {
            if (!s->pinned && check_pin(s, in, &h, avail) < 0)
                break;
            enum stmt_map_result m = map_statement(s, in, &h, avail);
            if (m == STMT_NEED_MORE)
                break;
            if (m == STMT_FAILED)
                return;
            note_client_message(s, h.type);
            if (m == STMT_CONSUMED)
                answered |= answer_due_now(s);
            if (m == STMT_CONSUMED || m == STMT_STREAM_REST)
                continue; /* c2s_remaining set, or nothing left of it */
        } else if (s->state == SESS_READY) {
            int r = track_statement(s, in, &h, avail);
            if (r < 0)
                break;
            note_client_message(s, h.type);
        }
        s->c2s_remaining = h.length + 1;
    }
    sbuf_flush(s->backend);
    if (answered)
        sbuf_flush(s->client);
}

/* AuthenticationSASL: drop SCRAM-SHA-256-PLUS from the offered mechanisms. */
static void forward_auth_request(struct session *s, struct evbuffer *in, struct evbuffer *out, uint32_t total)
{
    uint8_t *msg = evbuffer_pullup(in, total);
    uint32_t code = proto_get_u32(msg + 5);
    if (code == AUTH_SASL) {
        uint8_t body[MAX_AUTH_MESSAGE];
        int n = proto_sasl_without_plus(msg + 9, total - 9, body, sizeof body);
        if (n < 0) {
            protocol_violation(s, "malformed SASL mechanism list from upstream");
            return;
        }
        uint8_t head[9];
        head[0] = 'R';
        proto_put_u32(head + 1, (uint32_t)(8 + n));
        proto_put_u32(head + 5, AUTH_SASL);
        evbuffer_add(out, head, 9);
        evbuffer_add(out, body, (size_t)n);
        evbuffer_drain(in, total);
    } else {
        evbuffer_remove_buffer(in, out, total);
    }
}

static int cancel_key_taken(struct relay *relay, uint32_t key)
{
    for (const struct session *other = *cancel_bucket(relay, key); other; other = other->cancel_next)
        if (other->cancel_key == key)
            return 1;
    return 0;
}

/* With the real PID shown, the key is all that stops a forged cancel:
 * random, never 0 (no key yet), and held by no other live session. In a
 * fleet its top 6 bits are this proxy's slot, so a CancelRequest that
 * reaches another proxy finds its way here (peer.c); 26 bits stay random.
 * 0 when there is no randomness to be had: a guessable key is worse than
 * no session. */
static uint32_t new_cancel_key(struct relay *relay)
{
    uint32_t slot = (uint32_t)relay->fleet.slot;
    for (int tries = 0; tries < 64; tries++) {
        uint32_t key;
        if (RAND_bytes((unsigned char *)&key, sizeof key) != 1)
            return 0;
        if (slot)
            key = (slot << PEER_SLOT_SHIFT) | (key & PEER_KEY_RANDOM_MASK);
        if (key != 0 && !cancel_key_taken(relay, key))
            return key;
    }
    return 0;
}

/* BackendKeyData: the client is told the backend's own PID, the one
 * pg_backend_pid(), pg_stat_activity and notifications name, and a key of
 * ours in place of the upstream's, so a CancelRequest has to come through
 * us and reaches only the session its (pid, key) pair names. */
static void forward_backend_key(struct session *s, struct evbuffer *in, struct evbuffer *out)
{
    uint8_t msg[13];
    evbuffer_remove(in, msg, sizeof msg);
    s->upstream_pid = proto_get_u32(msg + 5);
    s->upstream_key = proto_get_u32(msg + 9);
    s->cancel_pid = s->upstream_pid;
    cancel_index_remove(s); /* a second BackendKeyData replaces the first */
    s->cancel_key = new_cancel_key(s->relay);
    if (!s->cancel_key) {
        log_error("session %llu (%s): no random bytes for a cancel key (RAND_bytes failed)", (unsigned long long)s->id,
                  addr_of(s));
        session_fail(s, SQLSTATE_INTERNAL_ERROR, "could not generate random cancel key");
        return;
    }
    cancel_index_add(s);
    proto_put_u32(msg + 9, s->cancel_key);
    evbuffer_add(out, msg, sizeof msg);
}

/* After login, before the client's first query: Postgres is asked for the
 * backend's PID, because the BackendKeyData PID may be an edge's own (Neon's
 * proxy makes one up per connection) and the fleet must name its sessions
 * as pg_stat_activity does. The answer is swallowed like a re-prepare's;
 * the client goes on seeing the BackendKeyData PID. Only in a fleet. */
static void probe_backend_pid(struct session *s)
{
    if (!s->relay->probe_backend_pids || !s->backend)
        return;
    inject_query(s, PROTO_PID_PROBE_SQL);
    s->pid_probe = 1;
    sbuf_flush(s->backend);
}

/* The probe's DataRow: one column, the PID as text. Returns -1 until the
 * whole row is buffered; anything unexpected is ignored (the PID then
 * stays the BackendKeyData one). */
static int read_probe_answer(struct session *s, struct evbuffer *in, const struct msg_header *h, size_t avail)
{
    uint32_t total = h->length + 1;
    if (!s->pid_probe || h->type != 'D' || total > 32)
        return 0;
    if (avail < total)
        return -1;
    uint8_t msg[32];
    evbuffer_copyout(in, msg, total);
    proto_read_pid_row(msg, total, &s->backend_pid); /* sets it only when it reads one */
    return 0;
}

uint32_t session_backend_pid(const struct session *s)
{
    return s->backend_pid ? s->backend_pid : s->upstream_pid;
}

/* A ReadyForQuery arrived: bookkeeping for metrics, pause and shutdown. */
static void on_ready_for_query(struct session *s, uint8_t status)
{
    char before = s->tracker.tx_status;
    int unit_done = tracker_server_message(&s->tracker, 'Z', status);
    sync_busy(s);
    uint64_t now = relay_now_us(s->relay);
    if (s->state == SESS_AUTH) {
        session_set_state(s, SESS_READY);
        stop_login_timer(s);
        probe_backend_pid(s);
        log_debug("session %llu ready: user=%s database=%s", (unsigned long long)s->id, param(s, "user"),
                  param(s, "database"));
        return;
    }
    if (unit_done && s->unit_start_us)
        metrics_record_latency(&s->relay->metrics, now > s->unit_start_us ? now - s->unit_start_us : 0,
                               session_version(s) ? LATENCY_ROUTE_NEW : LATENCY_ROUTE_OLD);
    if (status == 'I')
        s->relay->metrics.transactions_total++;
    else if (before == 'I')
        s->tx_start_us = s->unit_start_us ? s->unit_start_us : now;
}

/* Auth "scram": an Authentication* message from the upstream is answered
 * by the proxy, never shown to the client. Same return codes as below. */
static int upstream_login_step(struct session *s, struct evbuffer *in, const struct msg_header *h, size_t avail)
{
    uint32_t total = h->length + 1;
    if (total > PROTO_MAX_AUTH_MESSAGE) {
        protocol_violation(s, "invalid authentication message from upstream");
        return -2;
    }
    if (avail < total)
        return -1;
    enum auth_result r = auth_upstream_message(s->auth, s->backend, evbuffer_pullup(in, total), total);
    if (r == AUTH_FAILED) {
        fail_authentication(s);
        return -2;
    }
    if (r == AUTH_NOT_MINE)
        return 0;
    evbuffer_drain(in, total);
    if (r == AUTH_DONE) { /* the exchange is over, and its state no longer needed */
        auth_free(s->auth);
        s->auth = NULL;
        session_set_state(s, SESS_AUTH);
    }
    return 1;
}

/* The client's own copy of its tracked values takes a ParameterStatus;
 * they stay shared while it changes nothing. -1 as param_values_note, or
 * out of memory. */
static int note_own_parameter(struct session *s, const uint8_t *msg, uint32_t len)
{
    if (!s->params)
        return 0;
    struct param_values v = s->params->v;
    if (param_values_note(&v, msg, len) != 0)
        return -1;
    if (!memcmp(&v, &s->params->v, sizeof v))
        return 0;
    if (shared_params_own(&s->params) != 0)
        return -1;
    s->params->v = v;
    return 0;
}

/* Transaction pooling: a ParameterStatus of a tracked parameter is what
 * both the lent server and its client now have (the client's SET, or ours
 * from sync_params in Postgres's spelling). A value too long to carry pins
 * the client. Returns 0, or -1 while the message is not whole. */
static int note_parameter(struct session *s, struct evbuffer *in, const struct msg_header *h, size_t avail)
{
    uint32_t total = h->length + 1;
    if (!s->lent || h->type != 'S' || total > 1024)
        return 0;
    if (avail < total)
        return -1;
    const uint8_t *msg = evbuffer_pullup(in, total);
    if (param_values_note(&s->lent->params, msg, total) != 0 || note_own_parameter(s, msg, total) != 0) {
        if (!s->pinned)
            pin(s, "parameter value too long to carry");
    }
    return 0;
}

/* Examines a server message at its start. Returns 1 when it was consumed
 * whole, 0 to stream it, -1 when more bytes are needed, -2 when the session
 * is gone. */
static int inspect_server_message(struct session *s, struct evbuffer *in, struct evbuffer *out,
                                  const struct msg_header *h, size_t avail)
{
    uint32_t total = h->length + 1;
    switch (h->type) {
    case 'Z': {
        if (avail < 6)
            return -1;
        uint8_t z[6];
        evbuffer_copyout(in, z, 6);
        on_ready_for_query(s, z[5]);
        return 0;
    }
    case 'G': case 'W':
        tracker_server_message(&s->tracker, h->type, 0);
        sync_busy(s);
        return 0;
    case 'S':
        return note_parameter(s, in, h, avail);
    case 'R':
        if (s->state == SESS_UPSTREAM_LOGIN)
            return upstream_login_step(s, in, h, avail);
        /* fall through */
    case 'K':
        if (s->state != SESS_AUTH)
            return 0;
        if (total > MAX_AUTH_MESSAGE || (h->type == 'K' && h->length != 12) || (h->type == 'R' && h->length < 8)) {
            protocol_violation(s, "invalid authentication message from upstream");
            return -2;
        }
        if (avail < total)
            return -1;
        if (h->type == 'K')
            forward_backend_key(s, in, out);
        else
            forward_auth_request(s, in, out, total);
        return s->state == SESS_CLOSING ? -2 : 1;
    default:
        return 0;
    }
}

static void relay_server_to_client(struct session *s)
{
    if (!s->client || !s->backend || s->state == SESS_CLOSING)
        return;
    struct evbuffer *in = s->backend->in; /* NULL: nothing read since it was released */
    struct evbuffer *out = in ? sbuf_out(s->client) : NULL;
    if (!out)
        return;
    int saw_boundary = 0;
    struct relay_dir d = {s->backend, s->client, &s->s2c_remaining, &s->s2c_blocked, &s->s2c_discard, &s->bytes_out,
                          &s->relay->metrics.bytes_from_server, 0xffffffffu};
    for (;;) {
        struct msg_header h;
        size_t avail;
        int r = next_message(s, &d, &h, &avail);
        if (r < 0) {
            protocol_violation(s, "invalid message length from upstream");
            return;
        }
        if (r == 0)
            break;
        if (s->lent) /* in their turn: the message before them has passed */
            stmt_map_answer_due(&s->lent->replies, out);
        if (s->swallow_rfq) { /* answers to our re-prepare or PID probe, not the client's */
            if (read_probe_answer(s, in, &h, avail) < 0 || note_parameter(s, in, &h, avail) < 0)
                break;
            if (h.type == 'Z') {
                s->swallow_rfq--;
                s->pid_probe = 0;
            }
            s->s2c_remaining = h.length + 1;
            s->s2c_discard = 1;
            continue;
        }
        if (s->lent && stmt_map_server_message(&s->lent->replies, s->lent, &s->unnamed, h.type, out)) { /* the reply to one of ours */
            s->s2c_remaining = h.length + 1;
            s->s2c_discard = 1;
            continue;
        }
        int seen = inspect_server_message(s, in, out, &h, avail);
        if (seen == -2)
            return;
        if (seen == -1)
            break;
        if (h.type == 'Z' || h.type == 'G' || h.type == 'W')
            saw_boundary = 1;
        if (seen == 0)
            s->s2c_remaining = h.length + 1;
    }
    if (s->lent && !s->s2c_remaining)
        stmt_map_answer_due(&s->lent->replies, out);
    sbuf_flush(s->client);
    if (saw_boundary && s->relay->shutting_down && session_at_boundary(s)) {
        session_fail(s, SQLSTATE_ADMIN_SHUTDOWN, "terminating connection due to administrator command");
        return;
    }
    if (saw_boundary && s->relay->pause.paused) {
        if (s->holding && !tracker_may_hold_next(&s->tracker))
            session_release_held(s);
        relay_boundary_reached(s->relay);
    }
    if (saw_boundary && s->lent)
        give_back_at_boundary(s);
    if (saw_boundary && (s->pinned || !pooled(s)) && idle_at_boundary(s))
        release_idle_buffers(s);
}

/* ---- stream-buffer callbacks ---- */

static void client_readable(struct sbuf *sb, void *arg)
{
    struct session *s = arg;
    (void)sb;
    if (s->state == SESS_STARTUP)
        read_startup(s);
    else if (s->state == SESS_CLIENT_AUTH)
        read_client_auth(s);
    else
        relay_client_to_server(s);
}

static void client_drained(struct sbuf *sb, void *arg)
{
    struct session *s = arg;
    (void)sb;
    if (s->state == SESS_CLOSING) {
        free_later(s);
        return;
    }
    if (s->state == SESS_TLS_ACCEPT) {
        start_client_tls(s);
        return;
    }
    if (s->s2c_blocked && s->backend) {
        s->s2c_blocked = 0;
        sbuf_resume_read(s->backend);
        relay_server_to_client(s);
    }
}

static void client_tls_ready(struct sbuf *sb, void *arg)
{
    (void)sb;
    (void)arg; /* TLS is up: the StartupMessage comes next, through client_readable */
}

static void client_error(struct sbuf *sb, void *arg, int eof, const char *why)
{
    struct session *s = arg;
    int stranger = s->state == SESS_STARTUP || s->state == SESS_TLS_ACCEPT; /* nothing said yet but bytes */
    if (!eof && stranger)
        source_limit_failure(s->relay, addr_of(s), SOURCE_BAD_STARTUP, 1,
                             "session %llu (%s): client connection failed: %s", (unsigned long long)s->id,
                             addr_of(s), why);
    else if (!eof && s->state != SESS_CLOSING)
        log_session(LOG_LEVEL_INFO, s->id, "session %llu (%s): client connection failed: %s",
                    (unsigned long long)s->id, addr_of(s), why);
    else if (s->state == SESS_STARTUP && sbuf_pending_in(sb) > 0)
        source_limit_failure(s->relay, addr_of(s), SOURCE_BAD_STARTUP, 1,
                             "session %llu (%s): incomplete startup packet", (unsigned long long)s->id, addr_of(s));
    session_free(s);
}

static void server_readable(struct sbuf *sb, void *arg)
{
    (void)sb;
    relay_server_to_client(arg);
}

static void server_drained(struct sbuf *sb, void *arg)
{
    struct session *s = arg;
    (void)sb;
    if (s->c2s_blocked) {
        s->c2s_blocked = 0;
        sbuf_resume_read(s->client);
        relay_client_to_server(s);
    }
}

static void server_ready(struct sbuf *sb, void *arg)
{
    (void)sb;
    (void)arg; /* the upstream is handed over already connected */
}

static void server_error(struct sbuf *sb, void *arg, int eof, const char *why)
{
    struct session *s = arg;
    (void)sb;
    if (!eof)
        log_session(LOG_LEVEL_INFO, s->id, "session %llu: upstream connection failed: %s", (unsigned long long)s->id,
                    why);
    /* Relay what the server said last (often a FATAL), then close. */
    relay_server_to_client(s);
    if (s->state == SESS_CLOSING)
        return;
    if (s->lent) { /* the pool forgets it; the client was inside a transaction */
        struct pool_server *ps = s->lent;
        s->lent = NULL;
        s->backend = NULL;
        pool_release(ps, 0);
    } else {
        sbuf_free(s->backend);
        s->backend = NULL;
    }
    session_set_state(s, SESS_CLOSING);
    sbuf_pause_read(s->client);
    s->client->out_low = 0;
    if (sbuf_pending_out(s->client) == 0)
        free_later(s);
}

/* ---- queries from the rest of the proxy ---- */

int session_at_boundary(const struct session *s)
{
    return s->state != SESS_READY || tracker_at_boundary(&s->tracker);
}

void session_release_held(struct session *s)
{
    assert(s);
    if (!s->holding)
        return;
    s->holding = 0;
    if (!s->c2s_blocked && s->state == SESS_READY)
        sbuf_resume_read(s->client);
    relay_client_to_server(s);
}

void session_end_at_boundary(struct session *s)
{
    assert(s);
    if (s->state == SESS_CLOSING || s->state == SESS_CANCEL_WAIT) /* that one closes by itself, and says nothing */
        return;
    if (session_at_boundary(s))
        session_fail(s, SQLSTATE_ADMIN_SHUTDOWN, "terminating connection due to administrator command");
}

struct session *session_find_by_cancel_key(struct relay *relay, uint32_t pid, uint32_t key)
{
    assert(relay);
    for (struct session *s = *cancel_bucket(relay, key); s; s = s->cancel_next)
        if (s->cancel_pid == pid && s->cancel_key == key && s->state == SESS_READY)
            return s;
    return NULL;
}

int session_cancel(struct relay *relay, uint32_t pid, uint32_t key, cancel_done_fn done, uint64_t waiter)
{
    assert(relay && done);
    struct session *target = session_find_by_cancel_key(relay, pid, key);
    if (target && pooled(target)) /* between transactions nothing runs to cancel */
        return target->lent ? pool_cancel(target->lent, done, waiter) : -1;
    if (!target || !target->upstream_pid)
        return 0;
    if (upstream_send_cancel(relay, target->upstream_pid, target->upstream_key, done, waiter) != 0) {
        log_warn("session %llu: cancel request not sent: out of memory", (unsigned long long)target->id);
        return -1;
    }
    return 1;
}

static size_t count_prepared(const struct session *s)
{
    size_t n = 0;
    for (const struct prepared *p = s->prepared; p; p = p->next)
        n++;
    return n;
}

int session_reprepare(struct session *s)
{
    assert(s);
    if (s->lent) { /* its statements are prepared again on demand, under the new tables */
        if (s->state != SESS_READY || !session_at_boundary(s) || !pool_server_close_statements(s->lent, s->lent->sb->out))
            return 0;
        s->swallow_rfq++;
        sbuf_flush(s->backend);
        return 1;
    }
    struct evbuffer *out = s->state == SESS_READY && s->backend && s->prepared && session_at_boundary(s)
                               ? sbuf_out(s->backend)
                               : NULL;
    if (!out)
        return 0;
    int n = prepared_write_reprepare(s->prepared, out);
    if (n) {
        s->swallow_rfq++;
        sbuf_flush(s->backend);
    }
    return n;
}

json_t *session_describe(const struct session *s, uint64_t now_us)
{
    assert(s);
    const char *app = param(s, "application_name");
    int app_index = pin_tracked_index("application_name");
    if (s->params && s->params->v.known[app_index])
        app = s->params->v.value[app_index]; /* as the client set it since */
    char tx[2] = {s->tracker.tx_status, 0};
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer((json_int_t)s->id));
    json_object_set_new(o, "client", json_string(addr_of(s)));
    if (s->extra && s->extra->proxied_by[0])
        json_object_set_new(o, "proxied_by", json_string(s->extra->proxied_by));
    const char *user = param(s, "user");
    json_object_set_new(o, "user", user ? json_string(user) : json_null());
    const char *db = param(s, "database");
    json_object_set_new(o, "database", db ? json_string(db) : json_null());
    json_object_set_new(o, "application_name", json_string(app ? app : ""));
    const char *state = session_state_name(s->state);
    if (s->state == SESS_READY)
        state = s->holding ? "held" : tracker_at_boundary(&s->tracker) ? "idle" : "active";
    json_object_set_new(o, "state", json_string(state));
    json_object_set_new(o, "tx_status", json_string(tx));
    if (session_backend_pid(s))
        json_object_set_new(o, "backend_pid", json_integer((json_int_t)session_backend_pid(s)));
    json_object_set_new(o, "tls", json_boolean(s->client_on_tls));
    const char *version = session_version(s);
    json_object_set_new(o, "version", version ? json_string(version) : json_null());
    json_object_set_new(o, "prepared_statements", json_integer((json_int_t)count_prepared(s)));
    if (pooled(s)) {
        const char *why = session_pin_reason(s);
        json_object_set_new(o, "pinned", s->pinned ? json_string(why ? why : "out of memory") : json_null());
        json_object_set_new(o, "waiting_for_server", json_boolean(s->waiter.in != NULL));
    }
    json_object_set_new(o, "bytes_in", json_integer((json_int_t)s->bytes_in));
    json_object_set_new(o, "bytes_out", json_integer((json_int_t)s->bytes_out));
    json_object_set_new(o, "connected_s", json_real((double)(now_us - s->connected_us) / 1e6));
    if (s->state == SESS_READY && !tracker_at_boundary(&s->tracker)) {
        uint64_t since = s->tracker.tx_status != 'I' ? s->tx_start_us : s->unit_start_us;
        json_object_set_new(o, "in_transaction_ms", json_integer((json_int_t)((now_us - since) / 1000)));
    }
    return o;
}

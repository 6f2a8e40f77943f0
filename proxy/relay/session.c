/* Client sessions: what the session is and owns, from accept to free
 * (the state, the cancel keys, closing with or without a word), the stream
 * buffers' callbacks that hand each event to its part, and what the rest of
 * the proxy asks of sessions. The startup phase and the login are
 * session_login.c's, the relay and the lending of pooled servers
 * session_relay.c's; what they share is in session_internal.h. */
#include "session.h"

#include <arpa/inet.h>
#include <assert.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "auth.h"
#include "auth_lookup.h"
#include "compiler.h"
#include "log.h"
#include "peer.h"
#include "pin.h"
#include "prepared.h"
#include "relay.h"
#include "sbuf.h"
#include "session_internal.h"
#include "source_limit.h"
#include "startup_set.h"
#include "upstream.h"
static void client_readable(struct sbuf *sb, void *arg);
static void client_drained(struct sbuf *sb, void *arg);
static void client_tls_ready(struct sbuf *sb, void *arg);
static void client_error(struct sbuf *sb, void *arg, int eof, const char *why);
static void server_readable(struct sbuf *sb, void *arg);
static void server_drained(struct sbuf *sb, void *arg);
static void server_ready(struct sbuf *sb, void *arg);
static void server_error(struct sbuf *sb, void *arg, int eof, const char *why);

static const struct sbuf_ops client_ops = {client_readable, client_drained, client_tls_ready, client_error};
const struct sbuf_ops session_backend_ops = {server_readable, server_drained, server_ready, server_error};
static const struct pool_waiter_ops waiter_ops = {session_server_lent, session_server_not_lent};

/* pool_mode "transaction": a server is lent per transaction (pool.h). */
int session_pooled(const struct session *s)
{
    return s->relay->cfg.pool_transaction;
}

/* A startup parameter of the session's StartupMessage (NULL before it came). */
const char *session_param(const struct session *s, const char *key)
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
const char *session_addr(const struct session *s)
{
    return s->extra && s->extra->client_addr[0] ? s->extra->client_addr : s->addr;
}

/* The side struct, made on first use; NULL when out of memory. */
struct session_extra *session_extra_get(struct session *s)
{
    if (!s->extra)
        s->extra = calloc(1, sizeof *s->extra);
    return s->extra;
}

/* Records the version schema put first on the session's search_path
 * (NULL: none). 0, or -1 out of memory (the record then says none). */
int session_set_routed_schema(struct session *s, const char *schema)
{
    struct session_extra *x = schema || s->extra ? session_extra_get(s) : NULL;
    if (!x)
        return schema ? -1 : 0;
    free(x->routed_schema);
    x->routed_schema = schema ? strdup(schema) : NULL;
    return schema && !x->routed_schema ? -1 : 0;
}

/* At a transaction boundary with nothing of the client's or ours in flight. */
int session_idle_at_boundary(const struct session *s)
{
    return s->state == SESS_READY && tracker_at_boundary(&s->tracker) && !s->swallow_rfq && !s->s2c_remaining &&
           !s->c2s_remaining && !s->holding;
}

/* Nothing in flight on either side of an idle session: its sockets' buffers
 * go until bytes flow again (sbuf_release_idle). A lent server's are the
 * pool's: only an own upstream's are released with the client's. */
void session_release_idle_buffers(struct session *s)
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
void session_sync_busy(struct session *s)
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
                  (unsigned long long)s->id, session_addr(s), session_state_name(from), session_state_name(to));
        to = SESS_CLOSING;
    }
    session_counts_move(&s->relay->counts, from, to);
    s->state = to;
    session_sync_busy(s);
    if (forbidden)
        session_free_later(s);
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
int session_format_addr(char *out, size_t cap, const struct sockaddr *addr)
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
             session_addr(s), s->relay->cfg.client_login_timeout_ms / 1000, session_state_name(s->state));
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
                  session_addr(s));
        return -1;
    }
    return 0;
}

void session_stop_login_timer(struct session *s)
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
    int is_unix = session_format_addr(where, sizeof where, addr);
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
    if (session_backend_pid(s) && !s->lent)
        relay_backend_ended(relay, session_backend_pid(s));
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
    if (s->vgate_look && relay->vgate.waiting) /* held by version_gate.c, which sweeps the rest */
        relay->vgate.waiting--;
    startup_set_put(relay, s->startup);
    if (s->extra) {
        free(s->extra->fail_message);
        free(s->extra->routed_schema);
        free(s->extra);
    }
    unnamed_statement_free(&s->unnamed);
    carried_sets_free(&s->carried);
    session_sets_free(s);
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
void session_free_later(struct session *s)
{
    struct session_extra *x = session_extra_get(s);
    if (x && !x->free_ev)
        x->free_ev = evtimer_new(s->relay->base, free_now_cb, s);
    if (s->client)
        sbuf_pause_read(s->client);
    if (x && x->free_ev)
        event_active(x->free_ev, EV_TIMEOUT, 0);
    else
        log_error("session %llu: could not schedule its release", (unsigned long long)s->id);
}

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
            (unsigned long long)s->id, session_addr(s), msg, sqlstate);
    session_close_with_error(s, sqlstate, msg);
}

/* session_fail without the log line, which the caller has written (or
 * left out). */
void session_close_with_error(struct session *s, const char *sqlstate, const char *msg)
{
    if (s->connecting) {
        upstream_connect_cancel(s->connecting);
        s->connecting = NULL;
    }
    drop_server(s);
    int can_tell_client = s->client && s->state != SESS_TLS_ACCEPT;
    session_set_state(s, SESS_CLOSING);
    if (!can_tell_client) {
        session_free_later(s);
        return;
    }
    send_error(s, "FATAL", sqlstate, msg);
    sbuf_pause_read(s->client);
    s->client->out_low = 0;
    /* client_drained frees the session once the error is on the wire */
    if (sbuf_pending_out(s->client) == 0)
        session_free_later(s);
}

/* For a connection that only came to send a CancelRequest, and for the
 * communication errors before a startup packet, which Postgres answers by
 * closing without a word. */
void session_fail_silently(struct session *s)
{
    session_set_state(s, SESS_CLOSING);
    session_free_later(s);
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
    struct session_extra *x = session_extra_get(s);
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
void session_fail_authentication(struct session *s)
{
    const struct auth_failure *f = s->auth ? auth_failure(s->auth) : NULL;
    if (!f)
        session_fail(s, SQLSTATE_CONNECTION_FAILURE, "out of memory");
    else if (f->delay_ms > 0)
        session_fail_after(s, f->delay_ms, f->sqlstate, f->message);
    else
        session_fail(s, f->sqlstate, "%s", f->message);
}

void session_protocol_violation(struct session *s, const char *what)
{
    s->relay->metrics.protocol_errors++;
    session_fail(s, SQLSTATE_PROTOCOL_VIOLATION, "%s", what);
}

/* ---- cancel keys ---- */

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

int session_issue_cancel_key(struct session *s)
{
    cancel_index_remove(s);
    s->cancel_key = new_cancel_key(s->relay);
    if (!s->cancel_key)
        return -1;
    cancel_index_add(s);
    return 0;
}

uint32_t session_backend_pid(const struct session *s)
{
    return s->backend_pid ? s->backend_pid : s->upstream_pid;
}

/* ---- stream-buffer callbacks ---- */

static void client_readable(struct sbuf *sb, void *arg)
{
    struct session *s = arg;
    (void)sb;
    if (s->state == SESS_STARTUP)
        session_read_startup(s);
    else if (s->state == SESS_CLIENT_AUTH)
        session_read_client_auth(s);
    else
        session_client_to_server(s);
}

static void client_drained(struct sbuf *sb, void *arg)
{
    struct session *s = arg;
    (void)sb;
    if (s->state == SESS_CLOSING) {
        session_free_later(s);
        return;
    }
    if (s->state == SESS_TLS_ACCEPT) {
        session_start_client_tls(s);
        return;
    }
    if (s->s2c_blocked && s->backend) {
        s->s2c_blocked = 0;
        sbuf_resume_read(s->backend);
        session_server_to_client(s);
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
        source_limit_failure(s->relay, session_addr(s), SOURCE_BAD_STARTUP, 1,
                             "session %llu (%s): client connection failed: %s", (unsigned long long)s->id,
                             session_addr(s), why);
    else if (!eof && s->state != SESS_CLOSING)
        log_session(LOG_LEVEL_INFO, s->id, "session %llu (%s): client connection failed: %s",
                    (unsigned long long)s->id, session_addr(s), why);
    else if (s->state == SESS_STARTUP && sbuf_pending_in(sb) > 0)
        source_limit_failure(s->relay, session_addr(s), SOURCE_BAD_STARTUP, 1,
                             "session %llu (%s): incomplete startup packet", (unsigned long long)s->id, session_addr(s));
    session_free(s);
}

static void server_readable(struct sbuf *sb, void *arg)
{
    (void)sb;
    session_server_to_client(arg);
}

static void server_drained(struct sbuf *sb, void *arg)
{
    struct session *s = arg;
    (void)sb;
    if (s->c2s_blocked) {
        s->c2s_blocked = 0;
        sbuf_resume_read(s->client);
        session_client_to_server(s);
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
    session_server_to_client(s);
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
        session_free_later(s);
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
    session_client_to_server(s);
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

enum cancel_result session_cancel(struct relay *relay, uint32_t pid, uint32_t key, cancel_done_fn done,
                                  uint64_t waiter)
{
    assert(relay && done);
    struct session *target = session_find_by_cancel_key(relay, pid, key);
    if (target && session_pooled(target)) /* between transactions nothing runs to cancel */
        return target->lent ? pool_cancel(target->lent, done, waiter) : CANCEL_NOT_SENT;
    if (!target || !target->upstream_pid)
        return CANCEL_NO_MATCH;
    if (upstream_send_cancel(relay, target->upstream_pid, target->upstream_key, done, waiter) != 0) {
        log_warn("session %llu: cancel request not sent: out of memory", (unsigned long long)target->id);
        return CANCEL_NOT_SENT;
    }
    return CANCEL_SENT;
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
    const char *app = session_param(s, "application_name");
    int app_index = pin_tracked_index("application_name");
    if (s->params && s->params->v.known[app_index])
        app = s->params->v.value[app_index]; /* as the client set it since */
    char tx[2] = {s->tracker.tx_status, 0};
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer((json_int_t)s->id));
    json_object_set_new(o, "client", json_string(session_addr(s)));
    if (s->extra && s->extra->proxied_by[0])
        json_object_set_new(o, "proxied_by", json_string(s->extra->proxied_by));
    const char *user = session_param(s, "user");
    json_object_set_new(o, "user", user ? json_string(user) : json_null());
    const char *db = session_param(s, "database");
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
    if (session_pooled(s)) {
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

/* A session's startup phase and login: the PROXY protocol header, the
 * startup packets (SSLRequest and client TLS, GSSENCRequest, CancelRequest,
 * StartupMessage), the proxy's own SCRAM exchange with the client and the
 * user's lookup, the upstream connection and its StartupMessage, and with
 * transaction pooling the welcome the proxy says for a login. One part of
 * the client session (see session_internal.h); once a session is ready,
 * session_relay.c carries its traffic. */
#include "session.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "auth_lookup.h"
#include "compiler.h"
#include "log.h"
#include "migration_sql.h"
#include "peer.h"
#include "pin.h"
#include "proxy_header.h"
#include "relay.h"
#include "sbuf.h"
#include "search_path.h"
#include "session_internal.h"
#include "source_limit.h"
#include "startup_set.h"
#include "upstream.h"
#include "users.h"

/* What became of a startup-phase step (a packet, the user's lookup, the
 * start of the client's authentication). */
enum startup_result {
    STARTUP_NEXT_PACKET, /* still in the startup phase: read the next packet */
    STARTUP_MOVED_ON,    /* the session left the startup phase, or waits for something else */
    STARTUP_GONE,        /* the session was failed: touch nothing of it but its pointer */
};

/* A connection's first bytes, where a PROXY protocol header may or must be. */
enum first_bytes_result {
    FIRST_BYTES_WAIT, /* too few bytes to tell */
    FIRST_BYTES_READ, /* header read (or rightly absent): startup packets follow */
    FIRST_BYTES_GONE, /* refused: the session was failed */
};

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
        session_free_later(s); /* else client_drained frees it */
}

/* A startup-phase packet refused as Postgres refuses the same bytes (see
 * struct startup_refusal): told to the client only when Postgres would
 * tell it. Such packets cost their source a token: past its limit the
 * connection just closes, and the log sums them up. */
static void refuse_startup_packet(struct session *s, const struct startup_refusal *why)
{
    s->relay->metrics.protocol_errors++;
    int replies = why->old_protocol || why->sqlstate;
    if (!source_limit_failure(s->relay, session_addr(s), SOURCE_BAD_STARTUP, 1, "session %llu (%s): closing%s: %s%s%s%s",
                              (unsigned long long)s->id, session_addr(s), replies ? "" : " without a reply",
                              why->message, why->sqlstate ? " [" : "", why->sqlstate ? why->sqlstate : "",
                              why->sqlstate ? "]" : "")) {
        session_fail_silently(s);
    } else if (why->old_protocol) {
        refuse_old_protocol(s, why->message);
    } else if (why->sqlstate) {
        session_close_with_error(s, why->sqlstate, why->message);
    } else {
        session_fail_silently(s);
    }
}

void session_start_client_tls(struct session *s)
{
    SSL *ssl = SSL_new(s->relay->client_tls);
    if (!ssl) {
        session_fail(s, SQLSTATE_CONNECTION_FAILURE, "out of memory");
        return;
    }
    /* Bytes sent before the handshake would be trusted as if encrypted. */
    if (sbuf_start_tls(s->client, ssl, 1) != 0) {
        session_protocol_violation(s, "received unencrypted data after SSL request");
        return;
    }
    s->client_on_tls = 1;
    session_set_state(s, SESS_STARTUP);
}

static void on_upstream_ready(void *ctx, struct sbuf *sb, const char *error);
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
             session_addr(s), s->relay->cfg.cancel_wait_timeout_ms);
    session_fail_silently(s);
}

static void wait_for_cancel(struct session *s)
{
    session_set_state(s, SESS_CANCEL_WAIT);
    sbuf_pause_read(s->client); /* a CancelRequest is all a cancel connection says */
    session_stop_login_timer(s);
    int ms = s->relay->cfg.cancel_wait_timeout_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    /* Without its bound the connection could wait forever: it closes now
     * (the request is on its way regardless). */
    if (!(s->login_timer = evtimer_new(s->relay->base, cancel_wait_timeout_cb, s)) ||
        evtimer_add(s->login_timer, &tv) != 0) {
        log_error("session %llu (%s): could not set the cancel wait timer; closing", (unsigned long long)s->id,
                  session_addr(s));
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
    if (!source_limit_allows(relay, session_addr(s))) {
        session_fail_silently(s);
        return;
    }
    enum cancel_result sent = session_cancel(relay, pid, key, cancel_answered, s->id);
    if (sent == CANCEL_NO_MATCH)
        sent = peer_forward_cancel(relay, pid, key, session_addr(s), cancel_answered, s->id);
    if (sent == CANCEL_SENT) {
        wait_for_cancel(s);
        return;
    }
    if (sent == CANCEL_NO_MATCH)
        source_limit_failure(relay, session_addr(s), SOURCE_CANCEL_UNKNOWN, 1,
                             "session %llu (%s): cancel request for an unknown session ignored",
                             (unsigned long long)s->id, session_addr(s));
    session_fail_silently(s);
}

/* Refuses a StartupMessage the proxy will not serve: 1 when it did (the
 * session was failed), 0 when the session may go on. */
static int startup_refused(struct session *s)
{
    const struct config *cfg = &s->relay->cfg;
    if (cfg->client_tls == CLIENT_TLS_REQUIRE && !s->client_on_tls && !s->is_unix) {
        session_fail(s, SQLSTATE_INVALID_AUTH_SPEC, "pgtandem requires TLS: connect with sslmode=require");
        return 1;
    }
    if (s->relay->shutting_down) {
        session_fail(s, SQLSTATE_CANNOT_CONNECT_NOW, "the proxy is shutting down");
        return 1;
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
static enum startup_result begin_client_auth(struct session *s, const struct auth_lookup_answer *found)
{
    struct auth_peer peer = {s->relay, s->client, session_param(s, "user"), session_addr(s), s->id,
                             s->client_on_tls, found != NULL,
                             found && found->outcome == LOOKUP_FOUND ? &found->verifier : NULL};
    if (auth_begin_client(&peer, &s->auth) != AUTH_FAILED)
        return STARTUP_MOVED_ON;
    session_fail_authentication(s);
    return STARTUP_GONE;
}

static void on_role_looked_up(void *ctx, const struct auth_lookup_answer *answer)
{
    struct session *s = ctx;
    s->awaiting_role = 0;
    if (answer->outcome == LOOKUP_FAILED) {
        session_fail(s, SQLSTATE_CONNECTION_FAILURE, "pgtandem: could not look up user \"%s\" (--auth-query): %s",
                     session_param(s, "user"), answer->why);
        return;
    }
    if (begin_client_auth(s, answer) == STARTUP_MOVED_ON)
        sbuf_resume_read(s->client);
}

/* A user the users file does not hold is asked of the database when the
 * proxy has --auth-query (PgBouncer's order: auth_file first). */
static enum startup_result look_up_role(struct session *s)
{
    const char *user = session_param(s, "user");
    if (!s->relay->auth_lookup || (s->relay->users && users_find(s->relay->users, user)))
        return begin_client_auth(s, NULL);
    struct auth_lookup_answer answer;
    int r = auth_lookup_user(s->relay->auth_lookup, user, on_role_looked_up, s, &answer);
    if (r < 0) {
        session_fail(s, SQLSTATE_CONNECTION_FAILURE, "out of memory");
        return STARTUP_GONE;
    }
    if (r == 1)
        return begin_client_auth(s, &answer);
    s->awaiting_role = 1; /* the client waits for AuthenticationSASL: it sends nothing meanwhile */
    sbuf_pause_read(s->client);
    return STARTUP_MOVED_ON;
}

/* Handles one complete startup-phase packet. */
static enum startup_result handle_startup_packet(struct session *s, uint8_t *packet, uint32_t len)
{
    struct startup_refusal why;
    struct startup_packet sp;
    if (proto_parse_startup(packet, len, &sp, &why) != 0) {
        free(packet);
        refuse_startup_packet(s, &why);
        return STARTUP_GONE;
    }
    if ((sp.code == PROTO_SSL_CODE || sp.code == PROTO_GSSENC_CODE) && s->client_on_tls) {
        /* Postgres negotiates encryption once; another request reads as a version number */
        free(packet);
        proto_refuse_protocol(&why, sp.code);
        refuse_startup_packet(s, &why);
        return STARTUP_GONE;
    }
    if (sp.code == PROTO_SSL_CODE) {
        free(packet);
        int offer = s->relay->cfg.client_tls != CLIENT_TLS_DISABLE && !s->client_on_tls && !s->is_unix;
        evbuffer_add(sbuf_out(s->client), offer ? "S" : "N", 1);
        sbuf_flush(s->client);
        if (!offer)
            return STARTUP_NEXT_PACKET;
        session_set_state(s, SESS_TLS_ACCEPT);
        sbuf_pause_read(s->client);
        s->client->out_low = 0;
        if (sbuf_pending_out(s->client) == 0)
            session_start_client_tls(s);
        return STARTUP_MOVED_ON;
    }
    if (sp.code == PROTO_GSSENC_CODE) {
        free(packet);
        evbuffer_add(sbuf_out(s->client), "N", 1); /* no GSSAPI encryption: client falls back */
        sbuf_flush(s->client);
        return STARTUP_NEXT_PACKET;
    }
    if (sp.code == PROTO_CANCEL_CODE) {
        free(packet);
        handle_cancel_request(s, sp.cancel_pid, sp.cancel_key);
        return STARTUP_MOVED_ON;
    }
    /* an app-side pooler passes the database name on and drops options:
     * "appdb@NAME" declares release NAME where nothing else can */
    char *database_version = proto_startup_split_param(packet, &len, &sp, "database", '@');
    s->startup = startup_set_get(s->relay, packet, len, &sp, database_version);
    free(packet);
    if (!s->startup) {
        session_fail(s, SQLSTATE_CONNECTION_FAILURE, "out of memory");
        return STARTUP_GONE;
    }
    const struct startup_packet *ssp = &s->startup->sp; /* sp pointed into the packet */
    if (proto_needs_negotiation(ssp)) {
        /* first, as Postgres sends it: the client goes on at 3.0, without
         * the options (the upstream never sees them: we speak 3.0 there) */
        proto_add_negotiate_version(sbuf_out(s->client), ssp);
        sbuf_flush(s->client);
        log_debug("session %llu (%s): protocol %u.%u asked with %d protocol option%s; serving 3.0",
                  (unsigned long long)s->id, session_addr(s), ssp->requested >> 16, ssp->requested & 0xffff, ssp->npq,
                  ssp->npq == 1 ? "" : "s");
    }
    if (startup_refused(s))
        return STARTUP_GONE;
    if (!s->relay->cfg.auth_scram) {
        begin_upstream(s);
        return STARTUP_MOVED_ON;
    }
    session_set_state(s, SESS_CLIENT_AUTH);
    return look_up_role(s);
}

/* The connection's first bytes, before any startup packet: a PROXY
 * protocol header where one must or must not be. */
static enum first_bytes_result read_proxy_header(struct session *s)
{
    struct evbuffer *in = s->client->in;
    uint8_t buf[PROXY_HEADER_MAX];
    size_t avail = evbuffer_get_length(in);
    size_t n = avail < sizeof buf ? avail : sizeof buf;
    if (!n)
        return FIRST_BYTES_WAIT;
    evbuffer_copyout(in, buf, n);
    struct proxy_header h;
    enum proxy_header_result r = proxy_header_parse(buf, n, &h);
    if (r == PROXY_HEADER_NEED_MORE)
        return FIRST_BYTES_WAIT;
    struct startup_refusal why = {SQLSTATE_PROTOCOL_VIOLATION, 0, ""};
    if (s->proxy_header == PROXY_HEADER_REFUSED) {
        if (r == PROXY_HEADER_NONE) {
            s->proxy_header = PROXY_HEADER_READ;
            return FIRST_BYTES_READ;
        }
        snprintf(why.message, sizeof why.message, "PROXY protocol header refused: %s is not in proxy_protocol_trusted",
                 session_addr(s));
    } else if (r == PROXY_HEADER_NONE) {
        snprintf(why.message, sizeof why.message,
                 "a connection from %s (in proxy_protocol_trusted) must start with a PROXY protocol header",
                 session_addr(s));
    } else if (r == PROXY_HEADER_BAD) {
        snprintf(why.message, sizeof why.message, "invalid %s", h.why);
    }
    if (why.message[0]) {
        refuse_startup_packet(s, &why);
        return FIRST_BYTES_GONE;
    }
    evbuffer_drain(in, h.length);
    s->proxy_header = PROXY_HEADER_READ;
    if (h.has_source) {
        struct session_extra *x = session_extra_get(s);
        if (!x) {
            session_fail(s, SQLSTATE_CONNECTION_FAILURE, "out of memory");
            return FIRST_BYTES_GONE;
        }
        snprintf(x->proxied_by, sizeof x->proxied_by, "%s", s->addr);
        s->is_unix = session_format_addr(x->client_addr, sizeof x->client_addr, (const struct sockaddr *)&h.source);
        log_debug("session %llu: PROXY protocol v%d header from %s: the client is %s", (unsigned long long)s->id,
                  h.version, x->proxied_by, session_addr(s));
    }
    return FIRST_BYTES_READ;
}

void session_read_startup(struct session *s)
{
    struct evbuffer *in = s->client->in;
    if (s->proxy_header != PROXY_HEADER_READ && read_proxy_header(s) != FIRST_BYTES_READ)
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
        if (handle_startup_packet(s, packet, len) != STARTUP_NEXT_PACKET)
            return;
    }
}

/* ---- transaction pooling: login ---- */

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
    if (session_issue_cancel_key(s) != 0) {
        session_fail(s, SQLSTATE_INTERNAL_ERROR, "could not generate random cancel key");
        return;
    }
    uint8_t key_msg[13] = {'K'}, ready[6] = {'Z', 0, 0, 0, 5, 'I'};
    proto_put_u32(key_msg + 1, 12);
    proto_put_u32(key_msg + 5, s->cancel_pid);
    proto_put_u32(key_msg + 9, s->cancel_key);
    evbuffer_add(out, key_msg, sizeof key_msg);
    evbuffer_add(out, ready, sizeof ready);
    session_set_state(s, SESS_READY);
    session_stop_login_timer(s);
    sbuf_resume_read(s->client);
    sbuf_flush(s->client);
    session_release_idle_buffers(s); /* what is not on the wire yet keeps them */
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
    struct pool *p = session_current_pool(s);
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
        session_server_lent(&s->waiter, ps);
}

/* Client messages while the proxy authenticates it: whole 'p' messages. */
void session_read_client_auth(struct session *s)
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
            session_protocol_violation(s, "invalid authentication message length");
            return;
        }
        if (avail < h.length + 1u)
            return;
        uint8_t *msg = evbuffer_pullup(in, h.length + 1);
        enum auth_result r = auth_client_message(s->auth, msg, h.length + 1);
        evbuffer_drain(in, h.length + 1);
        if (r == AUTH_FAILED)
            session_fail_authentication(s);
        else if (r == AUTH_DONE && session_pooled(s))
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
    char route[2048] = ""; /* a chain's path of eight schemas and the client's own path fit */
    const char *schema = relay_version_schema(s->relay, s->startup->version);
    s->route_gen = s->relay->route.gen;
    if (session_set_routed_schema(s, schema) != 0)
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
        char *upstream_opts = is_options ? startup_options_upstream(value) : NULL;
        if (is_options && !upstream_opts) {
            evbuffer_free(params);
            return -1;
        }
        proto_add_startup_param(params, k, upstream_opts ? upstream_opts : value, is_options && route[0] ? route : NULL);
        free(upstream_opts);
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
    sbuf_set_ops(sb, &session_backend_ops, s);
    sb->out_low = s->relay->cfg.buffer_bytes / 2;
    if (send_startup_upstream(s) != 0) {
        session_fail(s, SQLSTATE_CONNECTION_FAILURE, "out of memory");
        return;
    }
    session_set_state(s, s->relay->cfg.auth_scram ? SESS_UPSTREAM_LOGIN : SESS_AUTH);
    sbuf_resume_read(s->client);
    session_client_to_server(s); /* anything the client already sent */
}

/* ---- transaction pooling: a server lent to a session that waited ---- */

#define SESSION_OF(w) ((struct session *)((char *)(w) - offsetof(struct session, waiter)))

/* No server for a session that waited (timeout, a login that failed): the
 * client hears why and the session closes. */
void session_server_not_lent(struct pool_waiter *w, const char *sqlstate, const char *message)
{
    struct session *s = SESSION_OF(w);
    if (s->state == SESS_CLOSING)
        return;
    /* logged at info even as 53300: a pool that cannot serve is the operator's business */
    log_session(LOG_LEVEL_INFO, s->id, "session %llu (%s): closing: %s [%s]", (unsigned long long)s->id,
                session_addr(s), message, sqlstate);
    session_close_with_error(s, sqlstate, message);
}

/* The pool lends `ps` to a session that waited for it. */
void session_server_lent(struct pool_waiter *w, struct pool_server *ps)
{
    struct session *s = SESSION_OF(w);
    session_attach_server(s, ps);
    if (s->state == SESS_CONNECTING) { /* the pool's first login: the client can be welcomed now */
        s->lent = NULL;
        s->backend = NULL;
        pool_release(ps, 1);
        welcome_client(s, ps->pool);
        return;
    }
    session_client_to_server(s);
}

/* Admin API over evhttp: GET /status, POST /pause, POST /resume,
 * GET /metrics; GET /healthz and /readyz (admin_health.c) and the status
 * page, GET / (status_page.c). Loopback by default; a bearer token when
 * configured.
 * POST /pause answers only when every session is at a transaction boundary
 * (or the timeout passes), so a caller can run DDL right after it returns.
 *
 * Web pages are callers too: a page can POST text/plain to 127.0.0.1
 * without asking, and DNS rebinding lets it read the answers. So without a
 * token a request must name this address or a loopback name in Host, an
 * Origin must be this address, and a state-changing request must be JSON
 * (which a page cannot send cross-site without a CORS preflight, never
 * answered here). Headers and body are bounded before any of that. */
#include "admin.h"
#include "admin_health.h"
#include "status_page.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "auth_lookup.h"
#include "log.h"
#include "pause.h"
#include "pool_metrics.h"
#include "pool.h"
#include "relay_control.h"
#include "relay.h"
#include "session.h"
#include "settings.h"

#define MAX_ROUTES 4
/* Read before the token is checked, so kept small: a request line and a
 * few headers fit many times over; a migration file fits the body. */
#define MAX_HEADERS_BYTES (64 * 1024)
#define MAX_BODY_BYTES (1 << 20)
#define RESERVE_RETRY_MS 10

struct admin_route {
    admin_route_fn fn;
    void *ctx;
};

struct admin {
    struct relay *relay;
    struct evhttp *http;
    struct admin_health *health;    /* GET /healthz, GET /readyz */
    struct admin_route routes[MAX_ROUTES];
    int nroutes;
    struct {
        const char *key;
        admin_status_fn fn;
        void *ctx;
    } status[4];
    int nstatus;
    struct {
        admin_metrics_fn fn;
        void *ctx;
    } metrics[4];
    int nmetrics;
    /* Out of descriptors, the admin API is how an operator finds out: one
     * descriptor is held back and given up for the next admin connection. */
    struct evconnlistener *listener;
    int reserve_fd;                 /* -1: given up, reopened by reserve_timer */
    struct event *reserve_timer;
    struct admin *next;             /* in `admins` */
};

/* evhttp's listener calls its error callback with the evhttp as argument;
 * this finds the admin that owns it (one per process in practice). */
static struct admin *admins;

/* A POST /pause waiting for the drain. */
struct pending_pause {
    struct admin *admin;
    struct evhttp_request *req;
};

/* ---- the operator's actions, in the log ---- */

static void add_text(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void add_text(char *out, size_t cap, const char *fmt, ...)
{
    size_t used = strlen(out);
    if (used + 1 >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out + used, cap - used, fmt, ap);
    va_end(ap);
}

static void add_value(char *out, size_t cap, json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    add_text(out, cap, "%.120s", text ? text : "?");
    free(text);
}

/* What the answer says changed: "old→new" for each setting a throttle
 * changed, else the fields that say what the action did. */
static void describe_outcome(json_t *body, char *out, size_t cap)
{
    static const char *const fields[] = {"name", "status", "paused", "was_paused", "waited_ms", "held_ms",
                                         "held_messages", "attempts", "revert_window_s", "error"};
    json_t *changed = json_object_get(body, "changed");
    if (json_is_object(changed)) {
        const char *key;
        json_t *v;
        if (json_object_size(changed) == 0)
            add_text(out, cap, ", nothing changed");
        json_object_foreach(changed, key, v) {
            add_text(out, cap, ", %s ", key);
            add_value(out, cap, json_object_get(v, "from"));
            add_text(out, cap, "\u2192");
            add_value(out, cap, json_object_get(v, "to"));
        }
        return;
    }
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        json_t *v = json_object_get(body, fields[i]);
        if (!v)
            continue;
        add_text(out, cap, ", %s ", fields[i]);
        add_value(out, cap, v);
    }
}

/* Every request that changes something is logged once, when it is answered:
 * who sent it, what it asked and what came of it. */
static void log_action(struct evhttp_request *req, int code, json_t *body)
{
    /* the server takes GET and POST only (evhttp_set_allowed_methods) */
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST)
        return;
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    char *addr = NULL;
    ev_uint16_t port = 0;
    if (conn)
        evhttp_connection_get_peer(conn, &addr, &port);
    char outcome[768] = "";
    describe_outcome(body, outcome, sizeof outcome);
    const char *uri = evhttp_request_get_uri(req);
    log_msg(code < 300 ? LOG_LEVEL_INFO : LOG_LEVEL_WARN, "admin: POST %.300s from %s:%u: %d%s", uri ? uri : "?",
            addr ? addr : "?", (unsigned)port, code, outcome);
}

void admin_reply_json(struct evhttp_request *req, int code, json_t *body)
{
    log_action(req, code, body);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    struct evbuffer *out = evbuffer_new();
    evbuffer_add_printf(out, "%s\n", text ? text : "{}");
    free(text);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    const char *reason = code == 200 ? "OK" : code == 202 ? "Accepted" : code == 400 ? "Bad Request"
                       : code == 401 ? "Unauthorized" : code == 403 ? "Forbidden" : code == 404 ? "Not Found"
                       : code == 409 ? "Conflict" : code == 413 ? "Payload Too Large"
                       : code == 415 ? "Unsupported Media Type" : code == 421 ? "Misdirected Request"
                       : code == 503 ? "Service Unavailable" : "Error";
    evhttp_send_reply(req, code, reason, out);
    evbuffer_free(out);
}

static json_t *error_body(const char *message)
{
    return json_pack("{s:s}", "error", message);
}

/* ---- who may call ---- */

static const char *header(struct evhttp_request *req, const char *name)
{
    return evhttp_find_header(evhttp_request_get_input_headers(req), name);
}

/* The request carries the configured token (0 when none is configured). */
static int has_token(struct admin *a, struct evhttp_request *req)
{
    const char *token = a->relay->cfg.admin_token;
    const char *h = header(req, "Authorization");
    if (!token || !h || strncasecmp(h, "Bearer ", 7) != 0)
        return 0;
    size_t n = strlen(token);
    return strlen(h + 7) == n && CRYPTO_memcmp(h + 7, token, n) == 0;
}

/* "host", "host:port", "[v6]" or "[v6]:port" into host (brackets off) and
 * port (-1 when absent). 0, or -1 when it does not read as one. */
static int split_host_port(const char *text, char *host, size_t cap, long *port)
{
    const char *end, *colon;
    if (text[0] == '[') {
        end = strchr(text, ']');
        if (!end)
            return -1;
        text++;
        colon = end[1] == ':' ? end + 1 : NULL;
        if (end[1] && !colon)
            return -1;
    } else {
        colon = strchr(text, ':');
        if (colon && strchr(colon + 1, ':'))
            return -1; /* a bare IPv6 address: not how Host names one */
        end = colon ? colon : text + strlen(text);
    }
    size_t n = (size_t)(end - text);
    if (n == 0 || n >= cap)
        return -1;
    memcpy(host, text, n);
    host[n] = '\0';
    *port = -1;
    if (colon) {
        char *stop;
        *port = strtol(colon + 1, &stop, 10);
        if (stop == colon + 1 || *stop || *port < 0 || *port > 65535)
            return -1;
    }
    return 0;
}

/* A name this admin API answers to: a loopback name or the host it was
 * told to listen on (unless that is a wildcard, which names nothing). */
static int own_host_name(struct admin *a, const char *host)
{
    const char *listen = a->relay->cfg.admin_host;
    if (config_host_is_loopback(host))
        return 1;
    int wildcard = !listen[0] || strcmp(listen, "0.0.0.0") == 0 || strcmp(listen, "::") == 0 ||
                   strcmp(listen, "*") == 0;
    return !wildcard && strcasecmp(host, listen) == 0;
}

/* Host must name this API (any port: a forwarded port is still us). A
 * request without Host (HTTP/1.0) did not come from a browser. */
static int host_ok(struct admin *a, struct evhttp_request *req)
{
    const char *h = header(req, "Host");
    char host[256];
    long port;
    if (!h)
        return 1;
    return split_host_port(h, host, sizeof host, &port) == 0 && own_host_name(a, host);
}

/* An Origin (sent by browsers) must be this API itself: http://NAME:PORT
 * with NAME one of ours and PORT the admin port, or, for a request that
 * carries the token, the origin the Host header names. */
static int origin_ok(struct admin *a, struct evhttp_request *req, int token)
{
    const char *o = header(req, "Origin");
    if (!o)
        return 1;
    if (strncasecmp(o, "http://", 7) != 0)
        return 0;
    char host[256];
    long port;
    if (split_host_port(o + 7, host, sizeof host, &port) != 0)
        return 0;
    if (own_host_name(a, host) && (port < 0 ? 80 : port) == a->relay->cfg.admin_port)
        return 1;
    const char *h = header(req, "Host");
    return token && h && strcasecmp(h, o + 7) == 0;
}

static int is_json(struct evhttp_request *req)
{
    const char *t = header(req, "Content-Type");
    static const char json_type[] = "application/json";
    if (!t)
        return 0;
    t += strspn(t, " \t");
    size_t n = sizeof json_type - 1;
    return strncasecmp(t, json_type, n) == 0 && (t[n] == '\0' || t[n] == ';' || t[n] == ' ' || t[n] == '\t');
}

/* 0 when the request may go on; otherwise it has been answered. */
static int admit(struct admin *a, struct evhttp_request *req, enum evhttp_cmd_type method, const char *path)
{
    int token = has_token(a, req);
    if (a->relay->cfg.admin_token && !token) {
        if (method == EVHTTP_REQ_GET && strcmp(path, "/") == 0) {
            status_page_reply(req, 401); /* the page asks for the token; it holds no data */
            return -1;
        }
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer");
        admin_reply_json(req, 401, error_body("missing or wrong bearer token"));
        return -1;
    }
    /* A browser cannot send the token on its own: with it, Host needs no check. */
    if (!token && !host_ok(a, req)) {
        admin_reply_json(req, 421, error_body("the Host header names neither this admin address nor a loopback "
                                              "name; give the admin API a token to reach it by another name"));
        return -1;
    }
    if (!origin_ok(a, req, token)) {
        admin_reply_json(req, 403, error_body("requests from another Origin (a web page) are refused"));
        return -1;
    }
    if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD && !token && !is_json(req)) {
        admin_reply_json(req, 415, error_body("a request that changes anything must have Content-Type: "
                                              "application/json (or the bearer token)"));
        return -1;
    }
    return 0;
}

static void pause_connection_closed(struct evhttp_connection *conn, void *arg)
{
    (void)conn;
    struct pending_pause *pp = arg;
    pause_forget_waiter(pp->admin->relay, pp);
    free(pp);
}

static void pause_done(void *ctx, int ok, uint64_t waited_us)
{
    struct pending_pause *pp = ctx;
    struct evhttp_connection *conn = evhttp_request_get_connection(pp->req);
    if (conn)
        evhttp_connection_set_closecb(conn, NULL, NULL);
    if (ok) {
        admin_reply_json(pp->req, 200, json_pack("{s:b,s:f,s:i}", "paused", 1, "waited_ms",
                                                 (double)waited_us / 1000.0, "sessions",
                                                 (int)relay_session_count(pp->admin->relay)));
    } else {
        json_t *body = json_pack("{s:s,s:b,s:f,s:o}", "error",
                                 "timed out waiting for sessions to reach a transaction boundary; resumed",
                                 "paused", 0, "waited_ms", (double)waited_us / 1000.0, "sessions",
                                 relay_busy_sessions(pp->admin->relay));
        admin_reply_json(pp->req, 409, body);
    }
    free(pp);
}

int admin_query_param(struct evhttp_request *req, const char *key, double *out)
{
    const struct setting *s = setting_by_name(SETTING_QUERY, key);
    struct evkeyvalq params;
    const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    char err[256];
    *out = s ? s->def : 0;
    if (!s) {
        snprintf(err, sizeof err, "query parameter \"%s\" is not in the settings table", key);
        admin_reply_json(req, 500, error_body(err));
        return -1;
    }
    if (!q)
        return 0;
    if (evhttp_parse_query_str(q, &params) != 0) {
        admin_reply_json(req, 400, error_body("the query string is not name=value pairs"));
        return -1;
    }
    const char *v = evhttp_find_header(&params, key);
    int rc = v ? setting_from_text(s, v, out, err, sizeof err) : 0;
    evhttp_clear_headers(&params);
    if (rc != 0)
        admin_reply_json(req, 400, error_body(err));
    return rc;
}

static void handle_pause(struct admin *a, struct evhttp_request *req)
{
    double timeout;
    if (admin_query_param(req, "timeout_ms", &timeout) != 0)
        return;
    int timeout_ms = (int)timeout;
    struct pending_pause *pp = calloc(1, sizeof *pp);
    if (!pp) {
        admin_reply_json(req, 500, error_body("out of memory"));
        return;
    }
    pp->admin = a;
    pp->req = req;
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    if (conn)
        evhttp_connection_set_closecb(conn, pause_connection_closed, pp);
    if (pause_begin(a->relay, timeout_ms, pause_done, pp) != 0) {
        if (conn)
            evhttp_connection_set_closecb(conn, NULL, NULL);
        free(pp);
        admin_reply_json(req, 409, error_body("too many pause requests waiting"));
    }
}

static void handle_resume(struct admin *a, struct evhttp_request *req)
{
    struct pause_state *p = &a->relay->pause;
    int was_paused = p->paused;
    uint64_t held_us = pause_resume(a->relay);
    admin_reply_json(req, 200, json_pack("{s:b,s:b,s:f,s:i}", "paused", 0, "was_paused", was_paused, "held_ms",
                                         (double)held_us / 1000.0, "held_messages",
                                         was_paused ? (int)p->last_held_messages : 0));
}

/* GET /pools: transaction pooling's pools (none in session mode). */
static json_t *pools_json(struct relay *relay)
{
    int pinned = 0;
    for (const struct session *s = relay->sessions; s; s = s->next)
        pinned += s->pinned;
    return json_pack("{s:s,s:i,s:i,s:i,s:o}", "pool_mode", relay->cfg.pool_transaction ? "transaction" : "session",
                     "pool_size", relay->cfg.pool_size, "servers", (int)pool_count_servers(relay), "pinned_sessions",
                     pinned, "pools", pool_describe_all(relay));
}

static void handle_status(struct admin *a, struct evhttp_request *req)
{
    struct relay *relay = a->relay;
    json_t *sessions = json_array();
    uint64_t now = relay_now_us(relay);
    for (struct session *s = relay->sessions; s; s = s->next)
        json_array_append_new(sessions, session_describe(s, now));
    json_t *body = json_pack("{s:b,s:b,s:i,s:o,s:{s:I,s:i}}", "paused", relay->pause.paused, "shutting_down",
                             relay->shutting_down, "connections", (int)relay_session_count(relay), "sessions", sessions,
                             "last_pause", "held_ms", (json_int_t)relay->pause.last_held_ms, "held_messages",
                             (int)relay->pause.last_held_messages);
    json_object_set_new(body, "versions", relay_version_counts(relay));
    json_object_set_new(body, "hold", pause_hold_json(relay));
    if (relay->cfg.pool_transaction)
        json_object_set_new(body, "pooling", pools_json(relay));
    if (relay->auth_lookup)
        json_object_set_new(body, "auth_query", auth_lookup_status_json(relay->auth_lookup));
    const char *peer = relay_peer_address(relay);
    json_object_set_new(body, "peer_address", peer[0] ? json_string(peer) : json_null());
    for (int i = 0; i < a->nstatus; i++) {
        json_t *extra = a->status[i].fn(a->status[i].ctx);
        if (extra)
            json_object_set_new(body, a->status[i].key, extra);
    }
    admin_reply_json(req, 200, body);
}

static void handle_metrics(struct admin *a, struct evhttp_request *req)
{
    struct evbuffer *out = evbuffer_new();
    struct pause_hold_info hold;
    pause_hold_info(a->relay, &hold);
    /* the fence holds new transactions as surely as a pause does */
    metrics_write_prometheus(&a->relay->metrics, relay_session_count(a->relay), hold.paused || hold.fenced, out);
    metrics_write_holds(hold.held, hold.fenced, hold.kind, out);
    pool_metrics_write(a->relay, out);
    for (int i = 0; i < a->nmetrics; i++)
        a->metrics[i].fn(a->metrics[i].ctx, out);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain; version=0.0.4");
    evhttp_send_reply(req, 200, "OK", out);
    evbuffer_free(out);
}

static void admin_request_cb(struct evhttp_request *req, void *arg)
{
    struct admin *a = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    if (!path)
        path = "/";
    /* the probes answer anyone: they tell nothing but ready or not */
    if (method == EVHTTP_REQ_GET && admin_health_route(a->health, req, path))
        return;
    if (admit(a, req, method, path) != 0)
        return;
    if (method == EVHTTP_REQ_GET && strcmp(path, "/") == 0)
        status_page_reply(req, 200);
    else if (method == EVHTTP_REQ_GET && strcmp(path, "/status") == 0)
        handle_status(a, req);
    else if (method == EVHTTP_REQ_GET && strcmp(path, "/metrics") == 0)
        handle_metrics(a, req);
    else if (method == EVHTTP_REQ_GET && strcmp(path, "/pools") == 0)
        admin_reply_json(req, 200, pools_json(a->relay));
    else if (method == EVHTTP_REQ_POST && strcmp(path, "/pause") == 0)
        handle_pause(a, req);
    else if (method == EVHTTP_REQ_POST && strcmp(path, "/resume") == 0)
        handle_resume(a, req);
    else {
        for (int i = 0; i < a->nroutes; i++)
            if (a->routes[i].fn(a->relay, req, path, a->routes[i].ctx))
                return;
        admin_reply_json(req, 404, error_body("no such endpoint"));
    }
}

/* ---- the reserve descriptor ---- */

static void arm_reserve_timer(struct admin *a)
{
    struct timeval tv = {0, RESERVE_RETRY_MS * 1000};
    if (evtimer_pending(a->reserve_timer, NULL) || evtimer_add(a->reserve_timer, &tv) == 0)
        return;
    /* Without the timer nothing would listen again: accept now instead. */
    log_error("admin API: could not set the reserve timer; accepting again at once");
    if (evconnlistener_enable(a->listener) != 0)
        log_error("admin API: could not accept connections again");
}

/* Takes the descriptor back as soon as one is free, then listens again. */
static void reserve_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct admin *a = arg;
    if (a->reserve_fd < 0)
        a->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (a->reserve_fd < 0) {
        arm_reserve_timer(a);
        return;
    }
    if (evconnlistener_enable(a->listener) != 0) {
        log_error("admin API: could not accept connections again; retrying");
        arm_reserve_timer(a);
    }
}

/* Out of descriptors: give up the reserve one, so the accept libevent
 * retries at once succeeds; with none left, stop accepting until the
 * reserve is back (instead of failing in a busy loop). */
static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    struct admin *a = admins;
    while (a && a->http != arg)
        a = a->next;
    int err = EVUTIL_SOCKET_ERROR();
    if (!a || (err != EMFILE && err != ENFILE))
        return;
    if (a->reserve_fd >= 0) {
        close(a->reserve_fd);
        a->reserve_fd = -1;
        log_warn("admin API: out of file descriptors; the reserve one serves the next admin connection");
    } else {
        evconnlistener_disable(l);
    }
    arm_reserve_timer(a);
}

static int keep_reserve(struct admin *a, struct evhttp_bound_socket *bound)
{
    a->listener = evhttp_bound_socket_get_listener(bound);
    a->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    a->reserve_timer = evtimer_new(a->relay->base, reserve_timer_cb, a);
    if (a->reserve_fd < 0 || !a->reserve_timer)
        return -1;
    evconnlistener_set_error_cb(a->listener, accept_error_cb);
    return 0;
}

struct admin *admin_start(struct relay *relay, char *err, unsigned long errlen)
{
    struct admin *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->relay = relay;
    a->reserve_fd = -1;
    a->next = admins;
    admins = a;
    a->http = evhttp_new(relay->base);
    a->health = admin_health_new(relay);
    struct evhttp_bound_socket *bound =
        a->http && a->health
            ? evhttp_bind_socket_with_handle(a->http, relay->cfg.admin_host, (ev_uint16_t)relay->cfg.admin_port)
            : NULL;
    if (!bound || keep_reserve(a, bound) != 0) {
        snprintf(err, errlen, "cannot listen for the admin API on %s:%d", relay->cfg.admin_host, relay->cfg.admin_port);
        admin_free(a);
        return NULL;
    }
    /* port 0: the kernel's choice, for the log, the fleet and the Origin check */
    relay->cfg.admin_port = relay_bound_port(evhttp_bound_socket_get_fd(bound), relay->cfg.admin_port);
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    /* A request that stops halfway (or a connection that never sends one)
     * is closed after this long instead of holding a descriptor forever. */
    evhttp_set_timeout(a->http, relay->cfg.admin_request_timeout_s);
    /* Both before the token is checked: evhttp answers 413 and closes. */
    evhttp_set_max_headers_size(a->http, MAX_HEADERS_BYTES);
    evhttp_set_max_body_size(a->http, MAX_BODY_BYTES);
    evhttp_set_gencb(a->http, admin_request_cb, a);
    return a;
}

void admin_add_routes(struct admin *a, admin_route_fn fn, void *ctx)
{
    if (a->nroutes < MAX_ROUTES)
        a->routes[a->nroutes++] = (struct admin_route){fn, ctx};
}

void admin_add_status(struct admin *a, const char *key, admin_status_fn fn, void *ctx)
{
    int n = (int)(sizeof a->status / sizeof a->status[0]);
    if (a->nstatus < n) {
        a->status[a->nstatus].key = key;
        a->status[a->nstatus].fn = fn;
        a->status[a->nstatus++].ctx = ctx;
    }
}

void admin_add_metrics(struct admin *a, admin_metrics_fn fn, void *ctx)
{
    if (a->nmetrics < (int)(sizeof a->metrics / sizeof a->metrics[0])) {
        a->metrics[a->nmetrics].fn = fn;
        a->metrics[a->nmetrics++].ctx = ctx;
    }
}

void admin_free(struct admin *a)
{
    if (!a)
        return;
    for (struct admin **p = &admins; *p; p = &(*p)->next)
        if (*p == a) {
            *p = a->next;
            break;
        }
    admin_health_free(a->health); /* first: it unhooks its requests from their connections */
    if (a->http)
        evhttp_free(a->http);
    if (a->reserve_timer)
        event_free(a->reserve_timer);
    if (a->reserve_fd >= 0)
        close(a->reserve_fd);
    free(a);
}

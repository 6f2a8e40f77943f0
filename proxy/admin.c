/* Admin API over evhttp: GET /status, POST /pause, POST /resume,
 * GET /metrics. Loopback by default; a bearer token when configured.
 * POST /pause answers only when every session is at a transaction boundary
 * (or the timeout passes), so a caller can run DDL right after it returns. */
#include "admin.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pause.h"
#include "relay.h"
#include "server.h"
#include "session.h"

#define DEFAULT_PAUSE_TIMEOUT_MS 2000
#define MAX_ROUTES 4

struct admin_route {
    admin_route_fn fn;
    void *ctx;
};

struct admin {
    struct server *srv;
    struct evhttp *http;
    struct admin_route routes[MAX_ROUTES];
    int nroutes;
    struct {
        const char *key;
        admin_status_fn fn;
        void *ctx;
    } status[4];
    int nstatus;
};

/* A POST /pause waiting for the drain. */
struct pending_pause {
    struct admin *admin;
    struct evhttp_request *req;
};

void admin_reply_json(struct evhttp_request *req, int code, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    struct evbuffer *out = evbuffer_new();
    evbuffer_add_printf(out, "%s\n", text ? text : "{}");
    free(text);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    const char *reason = code == 200 ? "OK" : code == 401 ? "Unauthorized" : code == 404 ? "Not Found"
                       : code == 409 ? "Conflict" : code == 400 ? "Bad Request" : "Error";
    evhttp_send_reply(req, code, reason, out);
    evbuffer_free(out);
}

static json_t *error_body(const char *message)
{
    return json_pack("{s:s}", "error", message);
}

static int authorized(struct admin *a, struct evhttp_request *req)
{
    const char *token = a->srv->cfg.admin_token;
    if (!token)
        return 1;
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (!h || strncmp(h, "Bearer ", 7) != 0)
        return 0;
    size_t n = strlen(token);
    return strlen(h + 7) == n && CRYPTO_memcmp(h + 7, token, n) == 0;
}

static void pause_connection_closed(struct evhttp_connection *conn, void *arg)
{
    (void)conn;
    struct pending_pause *pp = arg;
    pause_forget_waiter(pp->admin->srv, pp);
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
                                                 (int)pp->admin->srv->session_count));
    } else {
        json_t *body = json_pack("{s:s,s:b,s:f,s:o}", "error",
                                 "timed out waiting for sessions to reach a transaction boundary; resumed",
                                 "paused", 0, "waited_ms", (double)waited_us / 1000.0, "sessions",
                                 relay_busy_sessions(pp->admin->srv));
        admin_reply_json(pp->req, 409, body);
    }
    free(pp);
}

int admin_query_int(struct evhttp_request *req, const char *key, int fallback)
{
    struct evkeyvalq params;
    const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    if (!q || evhttp_parse_query_str(q, &params) != 0)
        return fallback;
    const char *v = evhttp_find_header(&params, key);
    int out = v ? atoi(v) : fallback;
    evhttp_clear_headers(&params);
    return out;
}

static void handle_pause(struct admin *a, struct evhttp_request *req)
{
    int timeout_ms = admin_query_int(req, "timeout_ms", DEFAULT_PAUSE_TIMEOUT_MS);
    if (timeout_ms <= 0 || timeout_ms > 600000) {
        admin_reply_json(req, 400, error_body("timeout_ms must be between 1 and 600000"));
        return;
    }
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
    if (pause_begin(a->srv, timeout_ms, pause_done, pp) != 0) {
        if (conn)
            evhttp_connection_set_closecb(conn, NULL, NULL);
        free(pp);
        admin_reply_json(req, 409, error_body("too many pause requests waiting"));
    }
}

static void handle_resume(struct admin *a, struct evhttp_request *req)
{
    struct pause_state *p = &a->srv->pause;
    int was_paused = p->paused;
    uint64_t held_us = pause_resume(a->srv);
    admin_reply_json(req, 200, json_pack("{s:b,s:b,s:f,s:i}", "paused", 0, "was_paused", was_paused, "held_ms",
                                         (double)held_us / 1000.0, "held_messages",
                                         was_paused ? (int)p->last_held_messages : 0));
}

static void handle_status(struct admin *a, struct evhttp_request *req)
{
    struct server *srv = a->srv;
    json_t *sessions = json_array();
    uint64_t now = server_now_us(srv);
    for (struct session *s = srv->sessions; s; s = s->next)
        json_array_append_new(sessions, session_describe(s, now));
    json_t *body = json_pack("{s:b,s:b,s:i,s:o,s:{s:I,s:i}}", "paused", srv->pause.paused, "shutting_down",
                             srv->shutting_down, "connections", (int)srv->session_count, "sessions", sessions,
                             "last_pause", "held_ms", (json_int_t)srv->pause.last_held_ms, "held_messages",
                             (int)srv->pause.last_held_messages);
    json_object_set_new(body, "versions", relay_version_counts(srv));
    const char *peer = relay_peer_address(srv);
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
    metrics_write_prometheus(&a->srv->metrics, a->srv->session_count, a->srv->pause.paused, out);
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
    if (!authorized(a, req)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer");
        admin_reply_json(req, 401, error_body("missing or wrong bearer token"));
        return;
    }
    if (method == EVHTTP_REQ_GET && strcmp(path, "/status") == 0)
        handle_status(a, req);
    else if (method == EVHTTP_REQ_GET && strcmp(path, "/metrics") == 0)
        handle_metrics(a, req);
    else if (method == EVHTTP_REQ_POST && strcmp(path, "/pause") == 0)
        handle_pause(a, req);
    else if (method == EVHTTP_REQ_POST && strcmp(path, "/resume") == 0)
        handle_resume(a, req);
    else {
        for (int i = 0; i < a->nroutes; i++)
            if (a->routes[i].fn(a->srv, req, path, a->routes[i].ctx))
                return;
        admin_reply_json(req, 404, error_body("no such endpoint"));
    }
}

struct admin *admin_start(struct server *srv, char *err, unsigned long errlen)
{
    struct admin *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->srv = srv;
    a->http = evhttp_new(srv->base);
    if (!a->http || evhttp_bind_socket(a->http, srv->cfg.admin_host, (ev_uint16_t)srv->cfg.admin_port) != 0) {
        snprintf(err, errlen, "cannot listen for the admin API on %s:%d", srv->cfg.admin_host, srv->cfg.admin_port);
        admin_free(a);
        return NULL;
    }
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    /* A request that stops halfway (or a connection that never sends one)
     * is closed after this long instead of holding a descriptor forever. */
    evhttp_set_timeout(a->http, srv->cfg.admin_request_timeout_s);
    evhttp_set_max_body_size(a->http, 1 << 20);
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

void admin_free(struct admin *a)
{
    if (!a)
        return;
    if (a->http)
        evhttp_free(a->http);
    free(a);
}

/* /migrations routes of the admin API (see admin_migrations.h).
 * A request that waits (complete, rollback) keeps its connection's close
 * callback, so a caller that goes away is forgotten rather than answered
 * into freed memory. */
#include "admin_migrations.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "migration_runner.h"

struct pending {
    struct migration_runner *runner;
    struct evhttp_request *req;
};

static void request_gone(struct evhttp_connection *conn, void *arg)
{
    (void)conn;
    struct pending *p = arg;
    runner_forget(p->runner, p);
    free(p);
}

static void answer(void *ctx, int status, json_t *body)
{
    struct pending *p = ctx;
    struct evhttp_connection *conn = evhttp_request_get_connection(p->req);
    if (conn)
        evhttp_connection_set_closecb(conn, NULL, NULL);
    admin_reply_json(p->req, status, body);
    free(p);
}

/* ?key=value through the settings table (range and default there). */
static int query_param(struct evhttp_request *req, const char *key, int *out)
{
    double v;
    if (admin_query_param(req, key, &v) != 0)
        return -1;
    *out = (int)v;
    return 0;
}

static int cutover_options(struct evhttp_request *req, struct cutover_options *o)
{
    return query_param(req, "drain_timeout_ms", &o->drain_timeout_ms) ||
           query_param(req, "lock_timeout_ms", &o->lock_timeout_ms) ||
           query_param(req, "statement_budget_ms", &o->statement_budget_ms) ||
           query_param(req, "attempts", &o->max_attempts) || query_param(req, "force", &o->force) ||
           query_param(req, "revert_window_s", &o->revert_window_s)
               ? -1
               : 0;
}

/* ?name=NAME: the migration a complete (or rollback ...) is meant for. */
static int name_param(struct evhttp_request *req, char *out, size_t cap)
{
    const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    struct evkeyvalq params;
    out[0] = '\0';
    if (!q)
        return 0;
    if (evhttp_parse_query_str(q, &params) != 0) {
        admin_reply_json(req, 400, json_pack("{s:s}", "error", "the query string is not name=value pairs"));
        return -1;
    }
    const char *v = evhttp_find_header(&params, "name");
    int fits = !v || strlen(v) < cap;
    if (v && fits)
        snprintf(out, cap, "%s", v);
    evhttp_clear_headers(&params);
    if (!fits)
        admin_reply_json(req, 400, json_pack("{s:s}", "error", "name is longer than a migration's name may be"));
    return fits ? 0 : -1;
}

static int route_op(enum evhttp_cmd_type m, const char *path, enum runner_op *op)
{
    static const struct {
        enum evhttp_cmd_type method;
        const char *path;
        enum runner_op op;
    } routes[] = {
        {EVHTTP_REQ_POST, "/migrations", RUNNER_START},
        {EVHTTP_REQ_GET, "/migrations/current", RUNNER_STATUS},
        {EVHTTP_REQ_POST, "/migrations/current/complete", RUNNER_COMPLETE},
        {EVHTTP_REQ_POST, "/migrations/current/rollback", RUNNER_ROLLBACK},
        {EVHTTP_REQ_POST, "/migrations/current/finalize", RUNNER_FINALIZE},
        {EVHTTP_REQ_POST, "/migrations/current/revert", RUNNER_REVERT},
        {EVHTTP_REQ_POST, "/migrations/current/throttle", RUNNER_THROTTLE},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (routes[i].method == m && strcmp(routes[i].path, path) == 0) {
            *op = routes[i].op;
            return 1;
        }
    return 0;
}

int admin_migrations_route(struct relay *relay, struct evhttp_request *req, const char *path, void *ctx)
{
    (void)relay;
    struct runner_request q;
    memset(&q, 0, sizeof q);
    if (!route_op(evhttp_request_get_command(req), path, &q.op))
        return 0;
    /* a start holds traffic too, to route the sessions (drain_timeout_ms) */
    if (q.op != RUNNER_STATUS && q.op != RUNNER_ROLLBACK && q.op != RUNNER_THROTTLE &&
        cutover_options(req, &q.cutover) != 0)
        return 1;
    if (q.op != RUNNER_START && q.op != RUNNER_STATUS && q.op != RUNNER_THROTTLE &&
        name_param(req, q.name, sizeof q.name) != 0)
        return 1;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    char *body = (q.op == RUNNER_START || q.op == RUNNER_THROTTLE) ? (char *)evbuffer_pullup(in, -1) : NULL;
    struct pending *p = calloc(1, sizeof *p);
    if (!p) {
        admin_reply_json(req, 500, json_pack("{s:s}", "error", "out of memory"));
        return 1;
    }
    p->runner = ctx;
    p->req = req;
    q.body = body ? body : "";
    q.body_len = body ? len : 0;
    q.answer = answer;
    q.ctx = p;
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    if (conn)
        evhttp_connection_set_closecb(conn, request_gone, p);
    runner_request(ctx, &q);
    return 1;
}

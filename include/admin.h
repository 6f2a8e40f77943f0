/* The admin HTTP API (libevent evhttp): status, pause/resume, metrics. */
#ifndef PGTANDEM_ADMIN_H
#define PGTANDEM_ADMIN_H

struct server;
struct evhttp_request;

struct admin *admin_start(struct server *srv, char *err, unsigned long errlen);
void admin_free(struct admin *a);

/* Extra routes (e.g. migrations) register here; return 1 when handled. */
typedef int (*admin_route_fn)(struct server *srv, struct evhttp_request *req, const char *path, void *ctx);
void admin_add_routes(struct admin *a, admin_route_fn fn, void *ctx);

/* GET /status gains key: fn's object (NULL: the key is left out). */
struct json_t;
typedef struct json_t *(*admin_status_fn)(void *ctx);
void admin_add_status(struct admin *a, const char *key, admin_status_fn fn, void *ctx);

/* An integer query parameter (?key=N), or fallback when absent. */
int admin_query_int(struct evhttp_request *req, const char *key, int fallback);

/* Replies with a JSON body (takes ownership of `body`). */
struct json_t;
void admin_reply_json(struct evhttp_request *req, int code, struct json_t *body);

#endif

/* The admin HTTP API (libevent evhttp): status, pause/resume, metrics. */
#ifndef PGTANDEM_ADMIN_H
#define PGTANDEM_ADMIN_H

struct relay;
struct evhttp_request;

struct admin *admin_start(struct relay *relay, char *err, unsigned long errlen);
void admin_free(struct admin *a);

/* Extra routes (e.g. migrations) register here; return 1 when handled. */
typedef int (*admin_route_fn)(struct relay *relay, struct evhttp_request *req, const char *path, void *ctx);
void admin_add_routes(struct admin *a, admin_route_fn fn, void *ctx);

/* GET /status gains key: fn's object (NULL: the key is left out). */
struct json_t;
typedef struct json_t *(*admin_status_fn)(void *ctx);
void admin_add_status(struct admin *a, const char *key, admin_status_fn fn, void *ctx);

/* GET /metrics gains fn's series (Prometheus text appended to out). */
struct evbuffer;
typedef void (*admin_metrics_fn)(void *ctx, struct evbuffer *out);
void admin_add_metrics(struct admin *a, admin_metrics_fn fn, void *ctx);

/* A query parameter (?key=value) parsed and range-checked by the settings
 * table (scope SETTING_QUERY); its default when absent. 0, or -1 after
 * answering 400 with the table's message. */
int admin_query_param(struct evhttp_request *req, const char *key, double *out);

/* Replies with a JSON body (takes ownership of `body`). */
struct json_t;
void admin_reply_json(struct evhttp_request *req, int code, struct json_t *body);

#endif

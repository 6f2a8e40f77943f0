/* Transaction pooling's pools as numbers: GET /pools and /status's view,
 * the pool servers' count and backend PIDs (pool.h), and the pools in
 * Prometheus text (see pool_metrics.h). The
 * numbers are the pools' own counters; only the pinned clients are counted
 * here, from the sessions, since a pinned session is what holds a server
 * of its pool for good. Database and user names come from clients, so label
 * values are escaped as the exposition format asks. */
#include "pool_metrics.h"

#include <event2/buffer.h>

#include "metrics.h"
#include "pool.h"
#include "relay.h"
#include "session.h"

struct pool_family {
    const char *name, *type, *help;
};

enum {
    F_WAITING, F_PINNED, F_SERVERS, F_LONGEST_WAIT, F_MAX_WAIT, F_LENDS, F_WAITS, F_TIMEOUTS, F_HITS,
    F_MISSES, F_COUNT
};

static const struct pool_family FAMILIES[F_COUNT] = {
    [F_WAITING] = {"pgtandem_pool_clients_waiting", "gauge", "Clients queued for a server connection."},
    [F_PINNED] = {"pgtandem_pool_clients_pinned", "gauge",
                  "Clients pinned to a server connection by state the pool cannot carry."},
    [F_SERVERS] = {"pgtandem_pool_servers", "gauge",
                   "Server connections by state (login: connecting or logging in; idle; active: lent to a "
                   "client; cancelling: given back, a cancel still on its way)."},
    [F_LONGEST_WAIT] = {"pgtandem_pool_longest_wait_seconds", "gauge", "How long the oldest waiting client has waited."},
    [F_MAX_WAIT] = {"pgtandem_pool_max_wait_seconds", "gauge", "The longest wait for a server since start."},
    [F_LENDS] = {"pgtandem_pool_lends_total", "counter", "Server connections lent to clients."},
    [F_WAITS] = {"pgtandem_pool_waits_total", "counter", "Clients that had to queue for a server."},
    [F_TIMEOUTS] = {"pgtandem_pool_wait_timeouts_total", "counter",
                    "Clients answered 53300 after query_wait_timeout."},
    [F_HITS] = {"pgtandem_pool_prepared_hits_total", "counter",
                "Bound statements already prepared on the lent server."},
    [F_MISSES] = {"pgtandem_pool_prepared_misses_total", "counter",
                  "Bound statements prepared on the lent server first."},
};

static void add_labels(struct evbuffer *out, const struct pool *p, const char *state)
{
    char db[160], user[160], schema[160]; /* names are at most 63 bytes, escaped at most twice that */
    metrics_escape_label(p->database, db, sizeof db);
    metrics_escape_label(p->user, user, sizeof user);
    metrics_escape_label(p->schema, schema, sizeof schema);
    evbuffer_add_printf(out, "{database=\"%s\",user=\"%s\",schema=\"%s\"", db, user, schema);
    if (state)
        evbuffer_add_printf(out, ",state=\"%s\"", state);
    evbuffer_add(out, "}", 1);
}

static uint32_t pinned_in(const struct relay *relay, const struct pool *p)
{
    uint32_t n = 0;
    for (const struct session *s = relay->sessions; s; s = s->next)
        n += s->pinned && s->lent && s->lent->pool == p;
    return n;
}

static void add_sample(struct evbuffer *out, const char *name, const struct pool *p, const char *state, double v)
{
    evbuffer_add_printf(out, "%s", name);
    add_labels(out, p, state);
    evbuffer_add_printf(out, " %.17g\n", v);
}

static void write_family(struct relay *relay, int f, struct evbuffer *out)
{
    uint64_t now = relay_now_us(relay);
    metrics_write_header(out, FAMILIES[f].name, FAMILIES[f].type, FAMILIES[f].help);
    for (const struct pool *p = relay->pools; p; p = p->next) {
        if (f == F_SERVERS) {
            add_sample(out, FAMILIES[f].name, p, "login", pool_logging_in(p));
            for (int st = PSRV_IDLE; st < PSRV_NSTATES; st++)
                add_sample(out, FAMILIES[f].name, p, pool_server_state_name((enum pool_server_state)st),
                           p->counts.in_state[st]);
            continue;
        }
        double v = 0;
        switch (f) {
        case F_WAITING: v = p->nwaiting; break;
        case F_PINNED: v = pinned_in(relay, p); break;
        case F_LONGEST_WAIT: v = p->wait_head ? (double)(now - p->wait_head->since_us) / 1e6 : 0; break;
        case F_MAX_WAIT: v = (double)p->waited_us_max / 1e6; break;
        case F_LENDS: v = (double)p->lends_total; break;
        case F_WAITS: v = (double)p->waits_total; break;
        case F_TIMEOUTS: v = (double)p->wait_timeouts; break;
        case F_HITS: v = (double)p->stmt_hits; break;
        case F_MISSES: v = (double)p->stmt_misses; break;
        default: break;
        }
        add_sample(out, FAMILIES[f].name, p, NULL, v);
    }
}

void pool_metrics_write(struct relay *relay, struct evbuffer *out)
{
    if (!relay->cfg.pool_transaction)
        return;
    for (int f = 0; f < F_COUNT; f++)
        write_family(relay, f, out);
}

uint32_t pool_count_servers(const struct relay *relay)
{
    uint32_t n = 0;
    for (const struct pool *p = relay->pools; p; p = p->next)
        n += pool_server_counts_total(&p->counts);
    return n;
}

void pool_append_backend_pids(const struct relay *relay, json_t *pids)
{
    for (const struct pool *p = relay->pools; p; p = p->next)
        for (const struct pool_server *ps = p->servers; ps; ps = ps->next) {
            uint32_t pid = ps->backend_pid ? ps->backend_pid : ps->pid;
            if (pid)
                json_array_append_new(pids, json_integer((json_int_t)pid));
        }
}

json_t *pool_describe_all(struct relay *relay)
{
    json_t *list = json_array();
    uint64_t now = relay_now_us(relay);
    for (struct pool *p = relay->pools; p; p = p->next) {
        json_t *o = json_object();
        json_object_set_new(o, "database", json_string(p->database ? p->database : ""));
        json_object_set_new(o, "user", json_string(p->user ? p->user : ""));
        json_object_set_new(o, "schema", p->schema ? json_string(p->schema) : json_null());
        json_object_set_new(o, "clients_waiting", json_integer(p->nwaiting));
        json_object_set_new(o, "servers_active", json_integer(p->counts.in_state[PSRV_LENT]));
        json_object_set_new(o, "servers_idle", json_integer(p->counts.in_state[PSRV_IDLE]));
        json_object_set_new(o, "servers_login", json_integer(pool_logging_in(p)));
        json_object_set_new(o, "servers_cancelling", json_integer(p->counts.in_state[PSRV_CANCELLING]));
        uint64_t oldest = p->wait_head ? now - p->wait_head->since_us : 0;
        json_object_set_new(o, "longest_wait_ms", json_integer((json_int_t)(oldest / 1000)));
        json_object_set_new(o, "max_wait_ms", json_integer((json_int_t)(p->waited_us_max / 1000)));
        json_object_set_new(o, "lends_total", json_integer((json_int_t)p->lends_total));
        json_object_set_new(o, "waits_total", json_integer((json_int_t)p->waits_total));
        json_object_set_new(o, "wait_timeouts_total", json_integer((json_int_t)p->wait_timeouts));
        json_object_set_new(o, "prepared_hits_total", json_integer((json_int_t)p->stmt_hits));
        json_object_set_new(o, "prepared_misses_total", json_integer((json_int_t)p->stmt_misses));
        json_object_set_new(o, "last_error", p->last_error[0] ? json_string(p->last_error) : json_null());
        json_object_set_new(o, "login_failing", json_boolean(p->login_failing));
        json_object_set_new(o, "login_failures_total", json_integer((json_int_t)p->login_failures));
        json_array_append_new(list, o);
    }
    return list;
}

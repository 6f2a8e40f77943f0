/* The relay's side of relay_control.h: the engine's requests turned into
 * pause bookkeeping and session walks, the fleet's into peer.c's table. */
#include "relay_control.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "pause.h"
#include "peer.h"
#include "peer_msg.h"
#include "pool.h"
#include "relay.h"
#include "session.h"
#include "version_route.h"

int relay_hold(struct relay *relay, const char *kind, const char *reason, int timeout_ms, relay_hold_fn done,
               void *ctx)
{
    return pause_begin_for(relay, kind, reason, timeout_ms, done, ctx);
}

void relay_forget(struct relay *relay, void *ctx)
{
    pause_forget_waiter(relay, ctx);
}

void relay_release(struct relay *relay, struct relay_hold_stats *out)
{
    uint32_t held_messages = relay->pause.held_messages;
    int was_paused = relay->pause.paused;
    uint64_t held_us = pause_resume(relay);
    if (out) {
        out->held_ms = (double)held_us / 1000.0;
        out->held_messages = was_paused ? held_messages : 0;
    }
}

uint32_t relay_held_messages(const struct relay *relay)
{
    return relay->pause.paused ? relay->pause.held_messages : 0;
}

int relay_reprepare(struct relay *relay)
{
    int n = 0;
    for (struct session *s = relay->sessions; s; s = s->next)
        n += session_reprepare(s);
    pool_forget_statements(relay);
    return n;
}

double relay_latency_p99_ms(const struct relay *relay)
{
    return metrics_recent_p99_ms(&relay->metrics);
}

void relay_latency_read(const struct relay *relay, int route, struct latency_fine *out)
{
    *out = relay->metrics.route_latency[route];
}

/* Every change of the table of routes: sessions are routed again at their
 * next boundary (the gen), pools of paths nobody is routed to retire. */
static void routes_changed(struct relay *relay)
{
    const struct version_route *r = &relay->route;
    relay->route.gen++;
    pool_route_changed(relay);
    if (r->n == 0) {
        log_info("version route: none");
        return;
    }
    for (int k = 0; k < r->n; k++)
        log_info("version route %d of %d: sessions declaring %s see %s, the others %s", k + 1, r->n,
                 r->e[k].version, r->paths[k + 1], r->paths[0]);
}

void relay_route_version(struct relay *relay, const char *version, const char *new_schema,
                         const char *old_schema)
{
    if (version_route_set_runner(&relay->route, version, new_schema, old_schema))
        routes_changed(relay);
}

void relay_route_flight(struct relay *relay, const struct flight_route *list, int n)
{
    if (version_route_set_flight(&relay->route, list, n))
        routes_changed(relay);
    for (int i = 0; i < relay->route.n; i++) /* routed: sessions declaring it wait for nothing */
        relay_version_known(relay, relay->route.e[i].version);
}

void relay_route_flight_one(struct relay *relay, const struct flight_route *one)
{
    if (version_route_set_one(&relay->route, one))
        routes_changed(relay);
    if (relay_route_index(relay, one->version) >= 0)
        relay_version_known(relay, one->version);
}

json_t *relay_routes_json(const struct relay *relay)
{
    json_t *list = json_array();
    for (int i = 0; i < relay->route.n; i++) {
        const char *name = relay->route.e[i].version;
        json_int_t n = 0;
        for (const struct session *s = relay->sessions; s; s = s->next)
            if (s->state == SESS_READY && session_version(s) && !strcmp(session_version(s), name))
                n++;
        json_array_append_new(list, json_pack("{s:s,s:s,s:I}", "name", name, "path", relay->route.paths[i + 1],
                                              "sessions", n));
    }
    return list;
}

json_t *relay_routed_names(const struct relay *relay)
{
    json_t *names = json_array();
    for (int i = 0; i < relay->route.n; i++)
        json_array_append_new(names, json_string(relay->route.e[i].version));
    return names;
}

int relay_route_index(const struct relay *relay, const char *version)
{
    return version_route_index(&relay->route, version);
}

int relay_routes_above(const struct relay *relay, const char *declared, const char *version)
{
    return version_route_sees_new(&relay->route, declared, version_route_index(&relay->route, version));
}

/* session_describe's keys that an answer naming sessions needs (NULL-ended). */
static json_t *brief(const struct session *s, uint64_t now, const char *const *keys)
{
    json_t *d = session_describe(s, now);
    json_t *out = json_object();
    for (; *keys; keys++) {
        json_t *v = json_object_get(d, *keys);
        if (v)
            json_object_set(out, *keys, v);
    }
    json_decref(d);
    return out;
}

json_t *relay_busy_sessions(const struct relay *relay)
{
    static const char *const keys[] = {"id", "client", "application_name", "tx_status", "in_transaction_ms", NULL};
    json_t *list = json_array();
    uint64_t now = relay_now_us(relay);
    for (const struct session *s = relay->sessions; s; s = s->next)
        if (!session_at_boundary(s))
            json_array_append_new(list, brief(s, now, keys));
    return list;
}

json_t *relay_sessions_not_of(const struct relay *relay, const char *version)
{
    static const char *const keys[] = {"id", "client", "application_name", "state", "backend_pid", NULL};
    json_t *list = json_array();
    uint64_t now = relay_now_us(relay);
    for (const struct session *s = relay->sessions; s; s = s->next) {
        const char *v = session_version(s);
        if (s->state == SESS_READY && !(v && version && (!strcmp(v, version) || relay_routes_above(relay, v, version))))
            json_array_append_new(list, brief(s, now, keys));
    }
    return list;
}

json_t *relay_version_counts(const struct relay *relay)
{
    json_t *counts = json_object();
    json_object_set_new(counts, "old", json_integer(0));
    for (const struct session *s = relay->sessions; s; s = s->next) {
        if (s->state != SESS_READY)
            continue;
        const char *key = session_version(s) ? session_version(s) : "old";
        json_t *n = json_object_get(counts, key);
        json_object_set_new(counts, key, json_integer(n ? json_integer_value(n) + 1 : 1));
    }
    return counts;
}

void relay_backend_ended(struct relay *relay, uint32_t pid)
{
    relay->ended[relay->ended_next % RELAY_ENDED_PIDS].pid = pid;
    relay->ended[relay->ended_next % RELAY_ENDED_PIDS].at_us = relay_now_us(relay);
    relay->ended_next++;
}

json_t *relay_backend_pids(const struct relay *relay)
{
    json_t *pids = json_array();
    for (const struct session *s = relay->sessions; s; s = s->next)
        if (session_backend_pid(s) && !s->lent) /* a lent server is listed with its pool */
            json_array_append_new(pids, json_integer((json_int_t)session_backend_pid(s)));
    pool_append_backend_pids(relay, pids);
    uint64_t now = relay_now_us(relay);
    for (size_t i = 0; i < RELAY_ENDED_PIDS; i++)
        if (relay->ended[i].pid && now - relay->ended[i].at_us < RELAY_ENDED_KEEP_US)
            json_array_append_new(pids, json_integer((json_int_t)relay->ended[i].pid));
    return pids;
}

/* Sessions the fence held go on unless a pause still holds them. */
void relay_set_lease(struct relay *relay, uint64_t deadline_us)
{
    int was_expired = relay_lease_expired(relay);
    relay->lease_deadline_us = deadline_us;
    if (deadline_us && pause_watch(relay) != 0) /* idempotent: the next renewal tries again */
        log_warn("fleet: the fence's watch could not start; it is tried again at the next heartbeat");
    if (was_expired && !relay_lease_expired(relay) && !relay->pause.paused)
        pause_release_sessions(relay);
}

static void compose_fence_error(struct relay *relay)
{
    snprintf(relay->fence_error, sizeof relay->fence_error,
             "pgtandem: this proxy's fleet fence could not be lifted within %u s (%s); reconnect",
             (relay->fence_bound_ms + 999) / 1000, relay->fence_why[0] ? relay->fence_why : "lease not renewed");
}

void relay_set_fence_bound(struct relay *relay, uint32_t bound_ms)
{
    relay->fence_bound_ms = bound_ms;
    relay->probe_backend_pids = 1;
    compose_fence_error(relay);
}

void relay_set_fence_why(struct relay *relay, const char *why)
{
    snprintf(relay->fence_why, sizeof relay->fence_why, "%s", why ? why : "");
    compose_fence_error(relay);
}

void relay_set_fleet_slot(struct relay *relay, int slot)
{
    peer_set_slot(relay, slot);
}

void relay_set_fleet_peers(struct relay *relay, const struct relay_peer *peers, size_t n)
{
    peer_set_peers(relay, peers, n);
}

const char *relay_peer_address(const struct relay *relay)
{
    return relay->fleet.address;
}

void relay_set_peer_messages(struct relay *relay, relay_peer_msg_fn fn, void *ctx)
{
    peer_msg_set_handler(relay, fn, ctx);
}

uint64_t relay_peer_open(struct relay *relay, const char *address)
{
    return peer_msg_open(relay, address);
}

int relay_peer_send(struct relay *relay, uint64_t channel, const char *msg)
{
    return peer_msg_send(relay, channel, msg);
}

void relay_peer_close(struct relay *relay, uint64_t channel)
{
    peer_msg_close(relay, channel);
}

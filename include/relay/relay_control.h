/* The relay as the engine sees it: the one small interface between the
 * migration engine and the sessions it must not know. The engine holds
 * traffic at transaction boundaries for the contract, has the sessions'
 * named statements prepared again after it, reads the application's recent
 * latency for its throttle, and pushes in the version route; the fleet
 * module pushes in this proxy's slot and its peers, for CancelRequests that
 * reach the wrong proxy, and talks to the other proxies on the peer port. The relay includes nothing of the engine; the
 * engine includes nothing of the relay but this header. `struct relay` is
 * opaque here. */
#ifndef PGTANDEM_RELAY_CONTROL_H
#define PGTANDEM_RELAY_CONTROL_H

#include <stddef.h>
#include <stdint.h>

#include "compiler.h"
#include "relay_peer.h"

struct relay;
struct event_base;
struct json_t;

/* drained: 1 when every session reached a boundary (traffic is held until
 * relay_release), 0 when the timeout passed first (the relay has resumed
 * by itself). waited_us: time from the hold to the drain or the timeout. */
typedef void (*relay_hold_fn)(void *ctx, int drained, uint64_t waited_us);

/* Holds every session's next transaction at its boundary; kind (a word:
 * "cutover", "fleet_hold", "refresh") and reason (a sentence) say why in
 * /status, /metrics and the log. `done` is called once. Returns -1 (and never calls done) when it cannot start. */
PGT_MUSTCHECK int relay_hold(struct relay *relay, const char *kind, const char *reason, int timeout_ms,
                             relay_hold_fn done, void *ctx);
/* Forgets a hold waiter whose context is going away. */
void relay_forget(struct relay *relay, void *ctx);

struct relay_hold_stats {
    double held_ms;           /* how long traffic was held */
    uint32_t held_messages;   /* client messages that waited */
};
/* Releases a hold (no-op when none); `out` (may be NULL) says what it cost. */
void relay_release(struct relay *relay, struct relay_hold_stats *out);
/* Client messages waiting in the hold in progress (0 when none). */
uint32_t relay_held_messages(const struct relay *relay);

/* While held and drained: prepares every session's named statements again
 * upstream (their answers are swallowed). Returns how many. */
int relay_reprepare(struct relay *relay);

/* The application's recent query latency, p99 in milliseconds (0: none). */
double relay_latency_p99_ms(const struct relay *relay);
struct latency_fine;
/* The finer per-route counts behind the backfill's latency budget
 * (route: enum latency_route), as they stand now; they only grow. */
void relay_latency_read(const struct relay *relay, int route, struct latency_fine *out);

/* While migration `version` is in progress: sessions declaring it
 * (pgtandem.version) get new_schema first on their search_path, every
 * other session old_schema (either may be NULL: that shape is not routed).
 * Sessions that connect from now on get it in their startup packet;
 * sessions already connected get a SET search_path (and their named
 * statements prepared again) just before their next transaction starts.
 * version NULL clears the route. This is the engine's own migration; the
 * others in flight beside it come from the fleet (relay_route_flight),
 * and each session's path holds them all (struct version_route). */
void relay_route_version(struct relay *relay, const char *version, const char *new_schema,
                         const char *old_schema);
struct flight_route;
/* The other migrations in flight, oldest first, as a look at the
 * migrations table found them (version_route.h): routed from now on, and
 * known to the version gate. */
void relay_route_flight(struct relay *relay, const struct flight_route *list, int n);
/* One the fleet heard of between its looks (old_schema NULL: it left
 * flight). */
void relay_route_flight_one(struct relay *relay, const struct flight_route *one);
/* The index of `version` among the routed migrations, oldest first; -1
 * when it is none of them (none declared, completed, unknown). */
int relay_route_index(const struct relay *relay, const char *version);
/* The names of the migrations routed now, oldest first (a JSON array),
 * for the fleet's heartbeat: a --db start waits until every live proxy
 * reports its own. */
struct json_t *relay_routed_names(const struct relay *relay);
/* The routes, oldest first: [{name, path (the schemas a session declaring
 * it sees first), sessions (ready ones here that declare it)}]. */
struct json_t *relay_routes_json(const struct relay *relay);
/* Whether a session declaring `declared` sees the new shape of migration
 * `version` because it declares one routed above it (built after it). */
int relay_routes_above(const struct relay *relay, const char *declared, const char *version);

/* The fleet's looks at the migrations table, for sessions that declare a
 * version this proxy has not heard of (version_gate.c): such a session's
 * first transaction waits until a look that started after it arrived is
 * applied, or bound_ms (0: the gate is off, as without a fleet).
 * relay_version_known: a name the table has (any status), which passes at
 * once; the route's own version always does. A look is numbered when it
 * is sent (relay_version_look_started) and reported once what it found is
 * in place, the route pushed (relay_version_look_applied). */
void relay_version_gate(struct relay *relay, int bound_ms);
void relay_version_known(struct relay *relay, const char *name);
uint64_t relay_version_look_started(struct relay *relay);
void relay_version_look_applied(struct relay *relay, uint64_t look);

/* Sessions not at a transaction boundary: [{id, client, application_name,
 * tx_status, in_transaction_ms}], for errors that say who blocked. */
struct json_t *relay_busy_sessions(const struct relay *relay);
/* Ready sessions that see the old shape of `version` (the release a
 * complete retires: neither it nor one routed above it declared):
 * [{id, client, application_name, state, backend_pid}]. */
struct json_t *relay_sessions_not_of(const struct relay *relay, const char *version);
/* Ready sessions per declared version ({"old": n, "<name>": n}). */
struct json_t *relay_version_counts(const struct relay *relay);

/* Backend PIDs of the sessions as pg_stat_activity names them (a JSON
 * array of integers; up to 2^32 - 1), so the fleet can tell its sessions
 * from ones that bypass every proxy. */
struct json_t *relay_backend_pids(const struct relay *relay);

/* Lease fencing for the fleet (see fleet_heartbeat.c): once the monotonic clock
 * passes deadline_us, every session is held at its next transaction
 * boundary, before the loop runs anything else for it, until the lease is
 * renewed. 0 turns fencing off and releases whoever it held. */
void relay_set_lease(struct relay *relay, uint64_t deadline_us);
/* 1 when the lease has run out (traffic is being held). */
int relay_lease_expired(const struct relay *relay);
/* The fence's bound: a lease that has been out this long fails the
 * sessions it holds, and new ones, with 57P01 instead of holding them on.
 * Also has every new session ask Postgres for its real backend PID
 * (session.h), which the fleet needs. */
void relay_set_fence_bound(struct relay *relay, uint32_t bound_ms);
/* Why the lease is not being renewed ("" when it is), for the fence's log
 * lines, /status and the error its sessions get. */
void relay_set_fence_why(struct relay *relay, const char *why);

/* Fleet identity for cancel keys: slot 1..63 is put in the top 6 bits of
 * every cancel key issued from now on; 0: not in a fleet (random keys). */
void relay_set_fleet_slot(struct relay *relay, int slot);

/* The other live proxies (replaces the previous list; n may be 0). A
 * CancelRequest matching no session here whose key carries one of their
 * slots is sent on to that proxy. Addresses must be numeric ("10.0.0.7:7000",
 * "[fd00::7]:7000"); entries with a bad address or slot are skipped (logged). */
void relay_set_fleet_peers(struct relay *relay, const struct relay_peer *peers, size_t n);

/* "host:port" this proxy's peer listener is bound to ("" when none). A
 * wildcard host (0.0.0.0, ::) is reported as bound: whoever publishes it
 * must put a reachable address in its place. */
const char *relay_peer_address(const struct relay *relay);

/* Messages between the proxies of a fleet on the peer port (the relay
 * frames them; their text is the caller's): `fn` gets every message on
 * every channel, both those this proxy opened and those another opened to
 * it, and is told when one fails (relay_peer.h). NULL refuses them all. */
void relay_set_peer_messages(struct relay *relay, relay_peer_msg_fn fn, void *ctx);
/* A channel to another proxy's peer listener ("host:port", numeric): its
 * id, 0 when it cannot be opened. Messages sent before the connection is
 * up are sent once it is; a channel that cannot connect fails (fn told). */
uint64_t relay_peer_open(struct relay *relay, const char *address);
/* Sends one message (text, at most 1024 bytes); -1 when the channel is gone. */
PGT_MUSTCHECK int relay_peer_send(struct relay *relay, uint64_t channel, const char *msg);
/* Closes a channel once what was sent on it is written; fn is not told. */
void relay_peer_close(struct relay *relay, uint64_t channel);

#endif

/* The fleet: every proxy in front of one database, coordinated through that
 * database (schema pgtandem), with no consensus of our own.
 *
 * Each proxy with an engine connection registers a row in
 * pgtandem.proxies and renews it (its heartbeat) several times per lease.
 * It LISTENs for changes of the migrations' status and for the cutover's
 * hold/ack/release messages, and polls the same tables with every
 * heartbeat in case a notification was lost (a reconnect, a restart).
 *
 * The cutover's coordinator (the proxy that runs `complete`) asks every
 * live proxy to hold its traffic (a row in pgtandem.fleet_holds and a
 * NOTIFY), waits until each has acknowledged that it is drained, and runs
 * the contract with a check before COMMIT (fleet_commit_check_sql) that
 * commits only while the hold is open and every live proxy holds. A
 * participant waits for the release at most hold_ms, and no longer than
 * the coordinator's lease once the coordinator stops heartbeating (it
 * died mid-contract); then it closes the hold itself, which waits for a
 * contract in flight and learns from the same row whether it committed. A
 * proxy does not join a hold whose coordinator is out of the fleet. A
 * proxy that stops heartbeating is out of the fleet after the lease; so
 * that it cannot relay traffic the fleet no longer waits for, its own
 * relay holds every session at the next boundary once its lease has run
 * out locally (relay_set_lease): the fence. A fence still up two leases
 * after it began closes its sessions with 57P01 (relay_set_fence_bound).
 *
 * Sessions are named by the PID Postgres gives their backend
 * (pg_backend_pid(), asked once after login), not the BackendKeyData PID,
 * which an edge such as Neon's proxy makes up; PIDs are stored as bigint. */
#ifndef PGTANDEM_FLEET_H
#define PGTANDEM_FLEET_H

#include <stddef.h>

struct server;
struct event_base;
struct json_t;
struct fleet;

struct fleet_options {
    const char *engine_db;
    int lease_ms;           /* a proxy silent this long is out of the fleet */
    const char *id;         /* NULL: host-pid-random */
    const char *listen;     /* host:port clients connect to */
    const char *admin;      /* host:port of the admin API */
};

/* The most recent migration and its status, whenever they may have changed. */
typedef void (*fleet_migration_fn)(void *ctx, const char *name, const char *status);

struct fleet *fleet_new(struct event_base *base, struct server *relay, const struct fleet_options *opt);
void fleet_observe(struct fleet *f, fleet_migration_fn fn, void *ctx);
void fleet_free(struct fleet *f);
/* The proxy is shutting down: its row goes now, so nobody waits for its
 * lease (or sends it a `complete`). */
void fleet_leave(struct fleet *f);

const char *fleet_id(const struct fleet *f);
int fleet_lease_ms(const struct fleet *f);

/* ok: every other live proxy has drained and holds its traffic; else why
 * not (the proxies that did not acknowledge, or the connection lost). */
typedef void (*fleet_held_fn)(void *ctx, int ok, const char *why);

/* Coordinator: asks every other live proxy to hold within drain_ms and to
 * keep holding at most hold_ms. `done` is called once, unless
 * fleet_release_all comes first. -1: no fleet connection now. */
int fleet_hold_all(struct fleet *f, const char *migration, int drain_ms, int hold_ms, fleet_held_fn done,
                   void *ctx);
/* The statement that must succeed in the contract's transaction before
 * COMMIT ("" when no hold is open). Caller frees. */
char *fleet_commit_check_sql(const struct fleet *f);
/* Ends the hold in whatever state: participants re-prepare if the
 * contract committed (the hold's row says so) and resume. */
void fleet_release_all(struct fleet *f);

/* Sessions on the database that come through no live proxy and are not
 * Postgres's or pgtandem's own: $1 the migrated tables (text[] literal),
 * $2 the lease in ms -> pid, who, client, state, xact_ms, touched, query.
 * `touched`: in a transaction, holding a lock on a migrated table, or its
 * last statement named one. */
extern const char FLEET_BYPASSING_SQL[];

/* {"id", "lease_ms", "members": [...], "bypassing": [...]} as of the last
 * heartbeat. */
struct json_t *fleet_status_json(const struct fleet *f);

/* The fleet's numbers for GET /metrics (migration_metrics.c renders them). */
struct fleet_metrics {
    int connected;                  /* the fleet's connection is up */
    double lease_s;                 /* the lease */
    double lease_age_s;             /* since the heartbeat that last renewed it was sent (-1: never) */
    unsigned long long heartbeat_failures; /* heartbeats due that did not renew the lease */
    size_t members, bypassing;      /* as of the last heartbeat */
};
void fleet_metrics(const struct fleet *f, struct fleet_metrics *out);

#endif

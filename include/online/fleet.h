/* The fleet: every proxy in front of one database, coordinated through that
 * database (schema pgtandem), with no consensus of our own.
 *
 * Each proxy with an engine connection registers a row in
 * pgtandem.proxies and a lease in pgtandem.fleet_leases, and renews the
 * lease several times per lease (its heartbeat) with a statement that
 * touches nothing else, so that a lock on pgtandem.proxies (an operator's
 * SELECT ... FOR UPDATE) neither delays a renewal nor fences anyone; the
 * rest of the heartbeat writes its proxies row only when no one else holds
 * it (doc/operators-guide.md, "A lock on pgtandem.proxies is not an outage").
 * It LISTENs for changes of the migrations' status and for the cutover's
 * hold and release messages, and polls the same tables with every
 * heartbeat in case a notification was lost (a reconnect, a restart).
 *
 * The cutover's coordinator (the proxy that runs `complete`) asks every
 * live proxy to hold its traffic (a row in pgtandem.fleet_holds and a
 * NOTIFY, and a message on each one's peer port: fleet_direct.h), waits
 * until each has said that it is drained (on the peer port or in its row),
 * and runs the contract, which waits in the database for every live
 * proxy's own acknowledgement in its row (fleet_held_wait_sql), with a
 * check before COMMIT (fleet_commit_check_sql) that commits only while the
 * hold is open and every live proxy holds. A
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

#include "fleet_hooks.h"
#include "pgasync.h"

struct relay;
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

struct fleet *fleet_new(struct event_base *base, struct relay *relay, const struct fleet_options *opt);
/* fn, looked: fleet_hooks.h, with the hold's callbacks. */
void fleet_observe(struct fleet *f, fleet_migration_fn fn, fleet_looked_fn looked, void *ctx);
void fleet_free(struct fleet *f);
/* The proxy is shutting down: its row goes now, so nobody waits for its
 * lease (or sends it a `complete`). */
void fleet_leave(struct fleet *f);

/* Runs a read on the fleet's connection, the one every member keeps, so
 * that the fleet's news is read without opening another (a fleet of N
 * then holds N backends at every moment, not 2N for a while after each
 * piece of news). At most FLEET_READ_VALUES (4) parameters; the statement
 * and values are copied. Each caller (its `done` and `ctx`) has one read
 * queued at most: a newer one replaces it (asking twice for the same news
 * gets one answer). `done` is called once per read queued, with an error
 * when the connection is lost first (08006). Returns 0 (queued), 1 (it
 * replaced the caller's queued read: one answer for both), -1 (no
 * connection up now, or eight callers' reads are queued: the caller uses
 * its own connection). */
int fleet_read(struct fleet *f, const char *sql, int n, const char *const *values, pgasync_done_fn done, void *ctx);
/* Tells every proxy that `name` is now `status` (the NOTIFY the state
 * update of a fleet's cutover leaves out, sent once its hold is released;
 * a proxy that misses it reads the status with its next heartbeat). */
void fleet_tell_news(struct fleet *f, const char *name, const char *status);

const char *fleet_id(const struct fleet *f);
/* This proxy's slot in the fleet (1..63; 0: none). */
int fleet_slot(const struct fleet *f);
int fleet_lease_ms(const struct fleet *f);

/* Coordinator: asks every other live proxy to hold within drain_ms and to
 * keep holding at most hold_ms. `announced` is called once the hold's row
 * exists (before `done`, and not when it could not be written); `done` is
 * called once, unless fleet_release_all comes first. -1: no fleet
 * connection now. */
int fleet_hold_all(struct fleet *f, const char *migration, int drain_ms, int hold_ms, fleet_announced_fn announced,
                   fleet_held_fn done, void *ctx);
/* Statements for the contract's transaction, after its DDL and before the
 * commit check: wait at most wait_ms for every live proxy's acknowledgement
 * to be in its row (some may have said so on the peer port first), failing
 * with PGT01 when one is missing; then list the sessions that bypass the
 * fleet (FLEET_BYPASSING_SQL's columns, for the tables in `tables_literal`,
 * a Postgres text[] literal) as the last result. NULL: out of memory. */
char *fleet_held_wait_sql(const struct fleet *f, const char *tables_literal, int wait_ms);
/* How the other proxies' acknowledgements of the current (or last) hold
 * came first: in their rows or on the peer port. */
void fleet_hold_acks(const struct fleet *f, int *database, int *peer);
/* The statement that must succeed in the contract's transaction before
 * COMMIT ("" when no hold is open). Caller frees. */
char *fleet_commit_check_sql(const struct fleet *f);
/* How the contract of a hold ended, as far as the coordinator knows. */
enum fleet_outcome {
    FLEET_NOT_COMMITTED, /* no contract ran, or the server rolled it back */
    FLEET_COMMITTED,     /* COMMIT returned success */
    FLEET_UNKNOWN        /* the connection went away with the COMMIT in flight */
};
/* Ends the hold in whatever state: participants re-prepare if the
 * contract committed (the hold's row says so) and resume. Those on a peer
 * channel are told at once when the outcome is known. */
void fleet_release_all(struct fleet *f, enum fleet_outcome outcome);

/* Sessions on the database that come through no live proxy and are not
 * Postgres's or pgtandem's own: $1 the migrated tables (text[] literal),
 * $2 the lease in ms -> pid, who, client, state, xact_ms, touched, query.
 * `touched`: in a transaction, holding a lock on a migrated table, or its
 * last statement named one. */
extern const char FLEET_BYPASSING_SQL[];

/* {"id", "lease_ms", "members": [...], "bypassing": [...], "direct":
 * {...}, "last_hold": {...}} as of the last heartbeat; `last_hold` is the
 * last hold served as a participant: how it was learnt of and released
 * ("peer", "database", "self"). */
struct json_t *fleet_status_json(const struct fleet *f);

/* The fleet's numbers for GET /metrics (migration_metrics.c renders them). */
struct fleet_metrics {
    int connected;                  /* the fleet's connection is up */
    double lease_s;                 /* the lease */
    double lease_age_s;             /* since the renewal that last renewed it was sent (-1: never) */
    unsigned long long heartbeat_failures; /* heartbeats due that did not renew the lease */
    size_t members, bypassing;      /* as of the last heartbeat */
    /* holds served as a participant, by how they were learnt of and how
     * they ended (index: 0 database, 1 peer, 2 self: our own deadline or
     * a hold found not to exist); acknowledgements counted as coordinator */
    unsigned long long holds_learned[3], holds_released[3], acks[3];
    unsigned long long holds_unconfirmed;   /* learnt of, but no such hold in the database */
    unsigned long long peer_asked, peer_refused, peer_failed;
};
void fleet_metrics(const struct fleet *f, struct fleet_metrics *out);

#endif

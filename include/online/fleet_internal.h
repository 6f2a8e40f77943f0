/* The fleet's parts and the state they share; private to proxy/online/.
 *
 * fleet.c keeps the public API (fleet.h), the lifecycle, what the other
 * proxies say (NOTIFY, peer messages) and what status and metrics read.
 * Below it, each part owns one concern and never calls a part above it;
 * the parts, bottom to top:
 *
 *   fleet_conn.c         the fleet's own connection: connect, register,
 *                        the queue of statements (one in flight, the most
 *                        urgent first), the connection lost
 *   fleet_coordinator.c  this proxy as the cutover's coordinator: the
 *                        hold asked for, the acknowledgements counted, the
 *                        contract's statements, the release
 *   fleet_participant.c  this proxy holding for another's cutover
 *   fleet_heartbeat.c    the lease renewed and applied (the fence), the
 *                        fleet, the migration and the newest hold learnt
 *
 * The heartbeat calls the participant (a hold learnt of or released in
 * the table); the coordinator and the participant call only the
 * connection. What the connection needs from above it is set by fleet.c
 * (fleet_new): who sends each job (`senders`) and who hears that the
 * connection was lost (`on_link_lost`), so no call goes back up
 * (tests/check_call_cycles.py). Their SQL is in fleet_sql.c, the lease's
 * arithmetic in fleet_lease.c and the peer messages in fleet_direct.c. */
#ifndef PGTANDEM_FLEET_INTERNAL_H
#define PGTANDEM_FLEET_INTERNAL_H

#include <stdint.h>

#include <event2/event.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "fleet_hooks.h"
#include "pgasync.h"

struct relay;
struct fleet_direct;

#define FLEET_MAX_SLOT 63 /* PEER_MAX_SLOT: the slot is 6 bits of the cancel key */

enum fleet_link { FLEET_LINK_DOWN, FLEET_LINK_CONNECTING, FLEET_LINK_SETUP, FLEET_LINK_REGISTERING, FLEET_LINK_UP };

/* What waits for the connection, most urgent first. */
enum fleet_job { FLEET_JOB_LEAVE, FLEET_JOB_RELEASE, FLEET_JOB_ABANDON, FLEET_JOB_ACK, FLEET_JOB_HOLD,
                 FLEET_JOB_HOLD_NOTIFY, FLEET_JOB_HOLD_LOOK, FLEET_JOB_NEWS, FLEET_JOB_LEASE, FLEET_JOB_ACK_CHECK,
                 FLEET_JOB_READ, FLEET_JOB_HEARTBEAT, FLEET_NJOBS };

/* How a proxy learnt of a hold, an acknowledgement or a release first. */
enum fleet_via { FLEET_VIA_DATABASE, FLEET_VIA_PEER, FLEET_VIA_SELF, FLEET_NVIA };
_Static_assert(FLEET_NVIA == 3, "struct fleet_metrics counts three ways");

static inline const char *fleet_via_name(enum fleet_via via)
{
    static const char *const names[FLEET_NVIA] = {"database", "peer", "self"};
    return names[via];
}

/* This proxy as the cutover's coordinator. */
struct fleet_coordinator_hold {
    int active;               /* waiting for acknowledgements */
    long long epoch;          /* 0 until the hold's row exists */
    long long release_epoch;  /* to be released (may be set before the row exists) */
    int release_pending;      /* release once the epoch is known */
    char migration[128];
    int drain_ms, hold_ms;
    char missing[512];        /* proxies that have not acknowledged */
    json_t *expected;         /* ids live when the hold began, not yet acknowledged */
    size_t participants;      /* how many were live when it began */
    json_t *peer_acks;        /* [{id, pids}] said on the peer port: written by the contract */
    int notified;             /* the hold was told through the database too (a NOTIFY) */
    int release_notify;       /* the release must be told through the database too */
    int acks[FLEET_NVIA];     /* acknowledgements counted, by how they came */
    uint64_t written_us;      /* when the hold's row was known written */
    fleet_announced_fn announced;
    fleet_held_fn done;
    void *ctx;
    struct event *timeout, *recheck;
};

/* This proxy holding for another's cutover. A hold learnt of (a NOTIFY,
 * a peer message) is served at once but counts for the commit only once
 * this proxy's acknowledgement has found its row open in the database
 * (`confirmed`); one whose row is not there was never asked for by a
 * coordinator and ends as soon as that is known, with nothing to undo. */
struct fleet_participant_hold {
    int active;
    int drained;              /* relay drained: acknowledged (or about to) */
    int confirmed;            /* our acknowledgement found the row open and is in our row */
    long long epoch;          /* the hold being served */
    long long last_epoch;     /* the newest hold confirmed, served or not */
    int drain_ms, hold_ms;
    struct event *deadline;
    int abandoning;           /* closing it ourselves (FLEET_JOB_ABANDON sent) */
    int peer_only;            /* "held" said on the peer port only: our row was not written */
    struct event *look;       /* reads the hold's row for a release the peer port did not bring */
    enum fleet_via learned;   /* how we first heard of it */
    uint64_t learned_us, drained_us, acked_us; /* its steps, for the log line at its end (0: not reached) */
    char coordinator[96];
    long long acking;         /* the epoch of the acknowledgement in flight (0: none) */
    long long looking;        /* the epoch whose row is being read (0: none) */
    long long next_epoch;     /* a newer hold that waits for this one to close (0: none) */
    int next_drain_ms, next_hold_ms;
    enum fleet_via next_learned;
    char next_coordinator[96];
};

/* The last hold this proxy served as a participant, for GET /status. */
struct fleet_last_hold {
    long long epoch;
    enum fleet_via learned, released;
    int committed, confirmed;
    double held_ms;
};

/* A read asked for by a part outside the fleet (fleet_read); one queued
 * per reader (its done and ctx), FLEET_READERS readers at most. */
#define FLEET_READ_VALUES 4
#define FLEET_READERS 8
struct fleet_read {
    char *sql;                    /* NULL: none */
    char *values[FLEET_READ_VALUES];
    int n;
    pgasync_done_fn done;
    void *ctx;
};

struct fleet;
/* Sends a job's statement (fleet_send_sql); not 0: it could not be sent. */
typedef int (*fleet_send_fn)(struct fleet *f);

struct fleet {
    struct event_base *base;
    struct relay *relay;
    struct pgasync db;
    enum fleet_link link;
    char *engine_db;
    char id[96], host[64], listen[160], admin[160];
    int lease_ms, heartbeat_ms, slot;
    int reconnects;
    unsigned jobs;                   /* bit per enum fleet_job */
    const fleet_send_fn *senders;    /* by enum fleet_job (fleet.c) */
    void (*on_link_lost)(struct fleet *f); /* the parts above the connection learn it is gone (fleet.c) */
    struct event *heartbeat_timer, *reconnect_timer;
    uint64_t lease_sent_us;          /* when the lease's renewal in flight (or the last one) was sent */
    uint64_t renewed_us;             /* sent time of the renewal that last renewed the lease; 0: none */
    unsigned long long heartbeat_failures; /* counted when the next one is due (fleet_heartbeat_cb) */
    int heartbeat_answered_ok;       /* the last renewal sent was answered as it should be */
    json_t *members, *bypassing;     /* as of the last heartbeat */
    char *heartbeat_pids;            /* the backend PIDs our row holds, as the last heartbeat wrote them (JSON) */
    char *heartbeat_pids_sent;       /* those of the heartbeat in flight */
    double heartbeat_sent_ms;        /* when the heartbeat in flight was sent (clock_now_ms) */
    char migration[128], status[32]; /* the most recent migration */
    char news_name[128], news_status[32]; /* fleet_tell_news's, to be sent */
    pgasync_done_fn handler;         /* of the statement in flight */
    fleet_migration_fn on_migration;
    fleet_looked_fn on_looked;
    void *on_migration_ctx;
    uint64_t look;                  /* the relay's number for the heartbeat in flight (version_gate.c) */
    struct fleet_coordinator_hold co;
    struct fleet_participant_hold part;
    struct fleet_direct *direct;     /* NULL: no peer messages (out of memory at start) */
    struct fleet_last_hold last;
    struct fleet_read read_waiting[FLEET_READERS], read_sent; /* fleet_read's: queued (oldest first), in flight */
    int nreads;
    unsigned long long holds_learned[FLEET_NVIA], holds_released[FLEET_NVIA], acks[FLEET_NVIA];
    unsigned long long holds_unconfirmed;
};

/* ---- fleet_conn.c ---- */

uint64_t fleet_now_us(void);
/* A timer that cannot be set fires at once (see fleet_conn.c). */
void fleet_add_timer(struct event *ev, long ms);
/* Queues job and sends the most urgent one if the connection is free. */
void fleet_want(struct fleet *f, enum fleet_job job);
/* The relay's sessions' backend PIDs as a JSON array (caller frees). */
char *fleet_pids_text(const struct fleet *f);
/* Sends a statement whose answer goes to handler (then the queue goes on). */
int fleet_send_sql(struct fleet *f, const char *sql, int n, const char *const *values, pgasync_done_fn handler);
void fleet_connect(struct fleet *f);
void fleet_reconnect_cb(evutil_socket_t fd, short what, void *arg);
/* Registers (again) in pgtandem.proxies: the slot, the peer address and key. */
void fleet_register(struct fleet *f);
void fleet_link_lost(struct fleet *f, const char *why);
int fleet_send_read(struct fleet *f);
int fleet_send_news(struct fleet *f);
/* The reads queued or in flight are dropped without an answer (shutdown). */
void fleet_reads_free(struct fleet *f);
/* 1 when the statement failed (a lost connection handled as such). */
int fleet_failed(struct fleet *f, const char *what, const char *error, const char *sqlstate);

/* ---- fleet_coordinator.c (and fleet.h's fleet_hold_all ... fleet_release_all) ---- */

void fleet_coordinator_finish(struct fleet *f, int ok, const char *why);
void fleet_coordinator_timeout_cb(evutil_socket_t fd, short what, void *arg);
void fleet_coordinator_recheck_cb(evutil_socket_t fd, short what, void *arg);
/* An acknowledgement from `who` of the hold being coordinated; `pids`
 * (peer only): its sessions' backend PIDs ("1,2", "-" none, NULL as its
 * row has them). */
void fleet_count_ack(struct fleet *f, const char *who, enum fleet_via via, const char *pids);
/* The channel to `who` broke before it said "held". */
void fleet_coordinator_lost(struct fleet *f, long long epoch, const char *who);
int fleet_send_hold(struct fleet *f);
int fleet_send_hold_notify(struct fleet *f);
int fleet_send_ack_check(struct fleet *f);
int fleet_send_release(struct fleet *f);

/* ---- fleet_participant.c ---- */

/* A hold asked for by another proxy, learnt of age_ms after it began. */
void fleet_participant_begin(struct fleet *f, long long epoch, int drain_ms, int hold_ms, long long age_ms,
                             const char *coordinator, enum fleet_via via);
void fleet_participant_finish(struct fleet *f, int committed, enum fleet_via via);
void fleet_participant_deadline_cb(evutil_socket_t fd, short what, void *arg);
void fleet_participant_look_cb(evutil_socket_t fd, short what, void *arg);
/* The peer channel of hold `epoch` broke: read its outcome from the row now. */
void fleet_participant_channel_lost(struct fleet *f, long long epoch);
int fleet_send_ack(struct fleet *f);
int fleet_send_hold_look(struct fleet *f);
int fleet_send_abandon(struct fleet *f);

/* ---- fleet_heartbeat.c ---- */

void fleet_learn_migration(struct fleet *f, const char *name, const char *status, double asked_ms);
void fleet_heartbeat_cb(evutil_socket_t fd, short what, void *arg);
int fleet_send_lease(struct fleet *f);
int fleet_send_heartbeat(struct fleet *f);

#endif

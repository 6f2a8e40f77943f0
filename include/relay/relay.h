/* The proxy itself, struct relay: the event loop, listeners, TLS contexts, every
 * session, pause state and metrics. Everything mutable in the relay hangs
 * off this struct. It is the bottom of the relay: every relay module
 * includes this header and this header includes no relay module but the
 * pure session_state.h and relay_peer.h, so the state that several of them
 * share (pause bookkeeping, the upstream's address, the version route the
 * engine pushed in) is defined here. */
#ifndef PGTANDEM_RELAY_H
#define PGTANDEM_RELAY_H

#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/ssl.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"
#include "metrics.h"
#include "migration_names.h"
#include "relay_peer.h"
#include "session_state.h"
#include "version_route.h"

struct relay;
struct session;
struct peer_conn;
struct peer_channel;
struct upstream_cancel;
struct source_limits;
struct users;
struct auth_lookup;
struct evdns_base;
struct evdns_getaddrinfo_request;
struct pool;
struct startup_set;

/* ok: 1 when every session reached a boundary, 0 on timeout (the relay has
 * already resumed by itself in that case). */
typedef void (*pause_done_fn)(void *ctx, int ok, uint64_t waited_us);

#define PAUSE_MAX_WAITERS 16
#define RELAY_CANCEL_BUCKETS 1024 /* a power of two */
#define RELAY_STARTUP_BUCKETS 256

struct pause_waiter {
    pause_done_fn done;
    void *ctx;
};

/* Owned by pause.c; sessions only read `paused` and count held messages. */
struct pause_state {
    int paused;
    int drained;                  /* every session is at a boundary */
    uint64_t started_us;
    uint64_t drained_us;
    uint32_t held_messages;       /* messages held since the pause began */
    uint64_t last_held_ms;        /* how long the last pause held traffic */
    uint32_t last_held_messages;
    struct event *timeout_timer;
    struct event *check_ev;       /* activated when a session may have reached a boundary */
    struct pause_waiter waiters[PAUSE_MAX_WAITERS];
    int nwaiters;
    char kind[24];                /* why traffic is held: "cutover", "fleet_hold", ... */
    char reason[192];             /* the same for people: who asked and for what */
    struct event *watch_timer;    /* while a pause or a fleet lease may hold sessions */
    int watch_holding;            /* the watch has announced a hold that lasts */
    uint64_t watch_logged_us;     /* its last line about it */
};

/* Where the upstream is; resolved at start and refreshed in the
 * background by upstream.c, so no connection waits for DNS. */
struct upstream_address {
    struct sockaddr_storage addr;
    int addrlen;          /* 0: not resolved (yet) */
    char error[160];      /* why resolution failed */
    struct evdns_getaddrinfo_request *pending;
    struct event *refresh_timer;
};

/* Sessions that declare a version this proxy has not heard of wait for
 * the fleet's next look (version_gate.c keeps it). */
#define VERSION_GATE_KNOWN 64

struct version_gate {
    int bound_ms;              /* how long a session waits at most; 0: off (no fleet to ask) */
    uint64_t looks_started;    /* the fleet's looks at the migrations table, numbered */
    uint64_t looks_applied;    /* the last look whose findings this proxy has applied */
    char known[VERSION_GATE_KNOWN][MIG_NAME_MAX + 1]; /* names the table has (a ring) */
    unsigned nknown, next;
    struct event *timer;       /* the earliest waiting session's bound */
    uint32_t waiting;          /* sessions held by the gate now */
};

/* Another proxy of the fleet: where its peer listener is. */
struct fleet_peer {
    int slot;
    struct sockaddr_storage addr;
    int addrlen;
    char address[128];
};

/* Told once a CancelRequest sent on has been answered: Postgres (or the
 * peer proxy) closed the connection that carried it, or gave up. `waiter`
 * names who waits (a session id, a peer connection id); the callee looks it
 * up, so a waiter that went away in the meantime needs no unhooking. */
typedef void (*cancel_done_fn)(struct relay *relay, uint64_t waiter);

/* What became of a CancelRequest handed on (to Postgres, a pooled server
 * or another proxy of the fleet). */
enum cancel_result {
    CANCEL_NOT_SENT = -1, /* it named a session, but the request could not be sent */
    CANCEL_NO_MATCH = 0,  /* it names no session this way leads to */
    CANCEL_SENT = 1,      /* on its way: `done` follows, at most once, from an event callback */
};

/* Cancels a session of this proxy named by (pid, key). What the peer
 * listener does with the CancelRequests it reads. */
typedef enum cancel_result (*peer_cancel_fn)(struct relay *relay, uint32_t pid, uint32_t key, cancel_done_fn done,
                                             uint64_t waiter);

/* Owned by peer.c. Several proxies in front of one database: a cancel key
 * carries the slot of the proxy that issued it in its top 6 bits (peer.h), so a
 * CancelRequest that reaches the wrong proxy (a shared port, a load
 * balancer) is sent on to the owner's peer listener. The fleet module
 * fills in the slot and the peers through relay_control.h. */
struct fleet_peers {
    int slot;                        /* 1..63 (PEER_MAX_SLOT); 0: not in a fleet (random keys) */
    struct fleet_peer *peers;        /* the other live proxies */
    size_t npeers;
    struct evconnlistener *listener; /* NULL: off */
    char address[128];               /* "host:port" it is bound to; "" when none */
    peer_cancel_fn cancel_here;      /* local sessions only: never forwards again */
    struct peer_conn *conns;         /* incoming requests being read, forwards in flight */
    uint32_t nincoming, nforwards;
    uint64_t next_conn_id;           /* names a connection waiting for its cancel's answer */
    struct peer_channel *channels;   /* message channels, both ways (peer_msg.c) */
    uint32_t nchannels_in, nchannels_out;
    uint64_t next_channel_id;
    relay_peer_msg_fn on_message;    /* the fleet's; NULL: messages are refused */
    void *on_message_ctx;
};

#define RELAY_ENDED_PIDS 64
#define RELAY_ENDED_KEEP_US 3000000u /* a backend ends well within this of its connection closing */

struct relay {
    struct config cfg;
    struct event_base *base;
    struct evdns_base *dns;
    struct evconnlistener *tcp_listener;
    struct evconnlistener *unix_listener;
    char *unix_socket_path;
    struct event *accept_retry;      /* re-enables accepting after descriptors ran out */
    uint64_t accept_error_logged_us; /* last "accept failed" line, to log once per interval */
    uint32_t accept_errors;          /* since that line */
    SSL_CTX *client_tls;   /* terminates client TLS; NULL when disabled */
    SSL_CTX *upstream_tls; /* NULL when the upstream is plain */
    struct upstream_address upstream_addr;
    struct users *users;             /* auth "scram": who may log in */
    struct auth_lookup *auth_lookup; /* --auth-query: the users the file does not hold; NULL: none */
    unsigned char mock_secret[32];   /* salts mock exchanges for unknown users */
    unsigned char cb_data[64];       /* tls-server-end-point of our certificate */
    size_t cb_len;
    struct auth_failures {           /* failed logins per client address, per minute */
        char addr[64];
        uint64_t window_start_us;
        uint32_t count;
    } auth_failures[64];
    int shutting_down;
    struct source_limits *limits;    /* strangers' failures per source address (source_limit.c) */
    struct upstream_cancel *cancels; /* CancelRequests on their way upstream (upstream.c) */

    struct session *sessions; /* doubly linked, newest first */
    struct session_counts counts;    /* per state, and busy (session.c keeps them) */
    /* Live sessions by cancel key (session.c): the key's low bits are
     * random, so they pick the bucket; chained through cancel_next. */
    struct session *cancel_index[RELAY_CANCEL_BUCKETS];
    uint64_t next_session_id;
    /* The distinct startup parameter sets of live sessions (startup_set.c). */
    struct startup_set *startup_sets[RELAY_STARTUP_BUCKETS];

    struct pause_state pause;
    uint64_t lease_deadline_us;      /* fleet lease (relay_control.h); 0: not fenced */
    uint64_t fence_seen_us;          /* when this process first saw the lease out (after the deadline) */
    uint32_t fence_bound_ms;         /* a fence older than this fails its sessions (0: never) */
    char fence_why[192];             /* what keeps the lease from being renewed, as last heard */
    char fence_error[320];           /* what a session failed by an overdue fence is told */
    int probe_backend_pids;          /* sessions ask Postgres for their backend PID (session.h) */
    /* Backends this proxy let go of a moment ago: Postgres ends one a moment
     * after its connection closes, and until then it is still claimed
     * (relay_backend_pids), or a cutover's look takes it for a session that
     * bypasses the fleet. */
    struct { uint32_t pid; uint64_t at_us; } ended[RELAY_ENDED_PIDS];
    unsigned ended_next;
    struct version_route route;
    struct version_gate vgate;       /* sessions of a version not heard of wait for the fleet (version_gate.c) */
    struct fleet_peers fleet;
    struct pool *pools;              /* transaction pooling (pool.c); NULL in session mode */
    struct event *heap_trim;         /* fires once sessions stop closing (relay.c) */
    uint32_t closed_since_trim;      /* sessions closed since the heap was last trimmed */
    struct event *pool_janitor;
    struct event *pool_handoff;      /* hands freed servers to waiters once a loop turn (pool.c) */
    uint64_t next_pool_server_id;
    struct metrics metrics;
};

/* How many sessions there are: the sum of the per-state counts. */
uint32_t relay_session_count(const struct relay *relay);

/* Time in microseconds from the monotonic clock. */
uint64_t relay_now_us(const struct relay *relay);
/* A backend this proxy let go of (its PID stays claimed RELAY_ENDED_KEEP_US). */
void relay_backend_ended(struct relay *relay, uint32_t pid);

/* Called by sessions as they go away, so shutdown can finish, and so the
 * memory a burst of them freed is given back once the burst is over. */
void relay_session_closed(struct relay *relay);
/* Makes relay->heap_trim (started by the proxy; without it nothing is
 * trimmed). 0, or -1 out of memory. */
int relay_start_heap_trim(struct relay *relay);

/* Called by sessions when they may have reached a transaction boundary:
 * during a pause, pause.c re-checks the drain once this loop turn. */
void relay_boundary_reached(struct relay *relay);

/* The fleet lease ran out: sessions hold at their next boundary. Reads
 * the clock itself, since a stopped process must fence before it relays
 * anything once it runs again. */
int relay_lease_expired(const struct relay *relay);
/* The lease has been out for longer than fence_bound_ms as this process
 * saw it: held sessions and new ones are failed (57P01, fence_error)
 * instead of waiting on. The bound counts from when the process could
 * first see the fence, so one that was stopped (SIGSTOP, a paused VM)
 * past its lease gets the bound to renew it once it runs again. */
int relay_fence_overdue(struct relay *relay);

/* The port a listening socket has: with port 0 configured, the one the
 * kernel chose (the listen, admin and peer addresses take port 0). */
int relay_bound_port(evutil_socket_t fd, int configured);

/* The version schemas a session declaring `version` (NULL: none) should
 * see first on its search_path, comma-separated and unquoted (struct
 * version_route), or NULL when no migration in flight routes it anywhere. */
const char *relay_version_schema(const struct relay *relay, const char *version);

#endif

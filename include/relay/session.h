/* A client session: one client connection and its database connection
 * (`backend`), relayed through bounded streaming buffers. With pool_mode
 * "session" the backend is the session's own upstream connection, opened
 * at login and closed with it; with "transaction" it is a pooled server
 * (pool.h) lent for one transaction at a time, NULL between them, unless
 * the client is pinned to it. */
#ifndef PGTANDEM_SESSION_H
#define PGTANDEM_SESSION_H

#include <event2/util.h>
#include <jansson.h>
#include <stdint.h>

#include "pool.h"
#include "proto.h"
#include "reply_queue.h"
#include "relay.h"
#include "session_state.h"
#include "startup_set.h"
#include "statement_map.h"

struct relay;
struct sbuf;
struct event;
struct auth_state;
struct upstream_connect;
struct pending_set;


/* What few sessions ever need, allocated on first use. */
struct session_extra {
    char client_addr[56];           /* the client a trusted PROXY header named ("": none) */
    char proxied_by[56];            /* the load balancer that sent that header */
    char pin_reason[64];            /* why the session keeps `lent` for good */
    char fail_sqlstate[6];
    char *fail_message;             /* a delayed FATAL (rate-limited login failures) */
    struct event *fail_ev;
    struct event *free_ev;          /* deferred release, see free_later */
    char *routed_schema;            /* the version schema we put on its search_path (NULL: none) */
};

/* Every field an idle session holds is here: an idle client in
 * transaction mode costs this struct, its socket's sbuf with one event and
 * no buffers, and references to what it shares with the other sessions
 * that logged in alike (its startup parameters, tracked values and
 * credentials). What is rarely used is in `extra`. */
struct session {
    struct session *prev, *next;
    struct relay *relay;
    uint64_t id;
    struct session *cancel_next;    /* same bucket of relay->cancel_index */
    struct sbuf *client;
    struct sbuf *backend;         /* the database connection: its own, or the lent pool server's sb */
    struct startup_set *startup;    /* shared (startup_set.h); NULL before the StartupMessage */
    struct session_extra *extra;    /* NULL until needed */
    struct event *login_timer;      /* client_login_timeout: freed once the session is ready;
                                       cancel_wait_timeout for a CancelRequest's connection */
    struct upstream_connect *connecting;
    struct auth_state *auth;        /* auth "scram" exchanges while they last, NULL in pass-through */

    struct proto_tracker tracker;
    uint32_t c2s_remaining;         /* bytes of the current client message still to pass */
    uint32_t s2c_remaining;
    uint8_t state;                  /* enum session_state, moved only by session_set_state */
    uint8_t c2s_blocked;            /* waiting for the upstream to drain */
    uint8_t s2c_blocked;
    uint8_t s2c_discard;            /* the current server message is one of those answers */
    uint8_t dealloc_replies;        /* EmptyQueryResponses of DEALLOCATEs the pool answers (session_statements.c) */
    unsigned busy : 1;              /* counted in relay->counts.busy: ready, not at a boundary */
    unsigned holding : 1;           /* a client message is held by a pause */
    unsigned client_on_tls : 1;
    unsigned is_unix : 1;
    unsigned proxy_header : 2;      /* enum in session_internal.h: what the first bytes may or must be */
    unsigned awaiting_role : 1;     /* its user is being looked up (--auth-query) */
    unsigned pid_probe : 1;         /* the backend PID question's answer is still due */
    unsigned pinned : 1;            /* keeps `lent` for good (why: extra->pin_reason) */
    unsigned vgate_checked : 1;     /* version_gate.c decided whether its first transaction waits */
    unsigned unit_failed : 1;       /* an ErrorResponse since the last ReadyForQuery: the server skips to Sync */
    uint32_t swallow_rfq;           /* ReadyForQuery answers of proxy-injected messages still due */
    uint32_t route_gen;             /* relay->route.gen when its search_path was last set */
    uint32_t upstream_pid, upstream_key; /* BackendKeyData from the upstream */
    uint32_t cancel_pid, cancel_key;     /* what the client was told */
    uint32_t backend_pid;           /* pg_backend_pid() as Postgres answers it (0: not known) */

    uint64_t connected_us;
    uint64_t unit_start_us;         /* first message of the request in flight */
    uint64_t tx_start_us;           /* when the open transaction began */
    uint64_t bytes_in, bytes_out;
    uint64_t vgate_look;            /* the fleet's look it waits for (version_gate.c); 0: none */
    uint64_t vgate_until_us;        /* and for how long at most */

    struct prepared *prepared;      /* named statements, for re-prepare after a cutover */

    /* pool_mode "transaction" (pool.h): `backend` is lent->sb while a
     * server is lent, NULL between transactions */
    struct pool_server *lent;
    struct pool_waiter waiter;      /* queued for a server when waiter.in is set */
    struct shared_creds *creds;     /* what the client proved, for pools made later (startup_set.h) */
    struct shared_params *params;   /* the tracked parameters as this client has them (startup_set.h) */
    struct unnamed_statement unnamed; /* its unnamed statement, kept across servers (statement_map.h) */
    struct carried_sets carried;    /* its SETs the pool carries to each server it borrows */
    struct pending_set *pending_sets; /* SETs sent, booked when their ReadyForQuery says they ran */
    char addr[];                    /* the peer's "host:port" or "unix", as accepted (see extra) */
};

/* Takes ownership of an accepted socket. */
void session_accept(struct relay *relay, evutil_socket_t fd, const struct sockaddr *addr, int addrlen);
/* Closes the session at once (both sockets). */
void session_free(struct session *s);
/* Closes with a FATAL ErrorResponse to the client once it is flushed. */
void session_fail(struct session *s, const char *sqlstate, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like session_fail, after delay_ms: the client waits, reading stops. */
void session_fail_after(struct session *s, int delay_ms, const char *sqlstate, const char *message);

/* Sits at a transaction boundary (nothing in flight, no open transaction). */
int session_at_boundary(const struct session *s);
/* The backend's PID as Postgres itself names it (pg_stat_activity): asked
 * once after login when the fleet needs it, since an edge in front of
 * Postgres (Neon's proxy) hands out BackendKeyData of its own. Falls back
 * to the BackendKeyData PID; 0 when neither is known. */
uint32_t session_backend_pid(const struct session *s);
/* Continues relaying after a pause is lifted. */
void session_release_held(struct session *s);
/* For GET /status and pause errors. */
json_t *session_describe(const struct session *s, uint64_t now_us);
/* Moves the session to `to` through the transition table (session_state.c),
 * keeping relay->counts right. A transition the table forbids is a bug: it
 * asserts in debug builds (PGT_DEBUG); otherwise it is logged as an error
 * and that one session is closed. */
void session_set_state(struct session *s, enum session_state to);
/* Finds the session a client's CancelRequest names (NULL: none). */
struct session *session_find_by_cancel_key(struct relay *relay, uint32_t pid, uint32_t key);
/* Cancels what the session named by (pid, key) is running upstream:
 * CANCEL_SENT when a session here matched and the request is on its way
 * (done(relay, waiter) follows once Postgres has closed the connection
 * carrying it). A peer_cancel_fn. Never forwards to another proxy: the
 * peer listener relies on that to keep a request from going round in
 * circles. */
enum cancel_result session_cancel(struct relay *relay, uint32_t pid, uint32_t key, cancel_done_fn done,
                                  uint64_t waiter);
/* Asks the session to end at its next boundary (shutdown). */
void session_end_at_boundary(struct session *s);
/* At a boundary during a pause: prepares the session's named statements
 * again upstream, answers swallowed. Returns how many. */
int session_reprepare(struct session *s);
/* The release the session declared (startup_set.h); NULL: the old shape. */
const char *session_version(const struct session *s);
/* Why the session keeps its server for good; NULL when it does not. */
const char *session_pin_reason(const struct session *s);

#endif

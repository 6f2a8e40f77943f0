/* A client session: one client connection paired with one upstream
 * connection (session pooling), relayed through bounded streaming buffers. */
#ifndef PGTANDEM_SESSION_H
#define PGTANDEM_SESSION_H

#include <event2/util.h>
#include <jansson.h>
#include <stdint.h>

#include "pool.h"
#include "proto.h"
#include "reply_queue.h"
#include "server.h"
#include "session_state.h"
#include "statement_map.h"

struct server;
struct sbuf;
struct event;
struct auth_state;
struct upstream_connect;


struct session {
    struct session *prev, *next;
    struct server *srv;
    uint64_t id;
    enum session_state state;       /* moved only by session_set_state */
    int busy;                       /* counted in srv->counts.busy: ready, not at a boundary */
    struct session *cancel_next;    /* same bucket of srv->cancel_index */
    struct sbuf *client;
    struct sbuf *server;
    struct event *free_ev;          /* deferred release, see free_later */
    struct upstream_connect *connecting;
    int client_on_tls;
    int is_unix;
    char client_addr[64];           /* the client's, from a trusted PROXY header when one came */
    char proxied_by[64];            /* the load balancer that sent that header ("": none) */
    int proxy_header;               /* enum in session.c: what the first bytes may or must be */

    uint8_t *startup_buf;           /* owns the strings startup points into */
    uint32_t startup_len;
    struct startup_packet startup;
    int awaiting_role;              /* its user is being looked up (--auth-query) */
    char *database_version;         /* "appdb@NAME" asked for: NAME, the database read as "appdb" */

    struct proto_tracker tracker;
    uint32_t c2s_remaining;         /* bytes of the current client message still to pass */
    uint32_t s2c_remaining;
    int c2s_blocked;                /* waiting for the upstream to drain */
    int s2c_blocked;
    int holding;                    /* a client message is held by a pause */

    uint64_t connected_us;
    uint64_t unit_start_us;         /* first message of the request in flight */
    uint64_t tx_start_us;           /* when the open transaction began */
    uint32_t upstream_pid, upstream_key; /* BackendKeyData from the upstream */
    uint32_t cancel_pid, cancel_key;     /* what the client was told */
    uint32_t backend_pid;           /* pg_backend_pid() as Postgres answers it (0: not known) */
    int pid_probe;                  /* that question's answer is still due */
    uint64_t bytes_in, bytes_out;

    struct prepared *prepared;      /* named statements, for re-prepare after a cutover */
    uint32_t swallow_rfq;           /* ReadyForQuery answers of proxy-injected messages still due */
    int s2c_discard;                /* the current server message is one of those answers */
    char *version;                  /* declared shape (pgtandem.version), NULL: the old one */
    char *routed_schema;            /* the version schema we put on its search_path (NULL: none) */
    uint32_t route_gen;             /* srv->route.gen when we did */
    struct auth_state *auth;        /* auth "scram" exchanges while they last, NULL in pass-through */
    struct auth_credentials *creds; /* transaction pooling: what the client proved, for pools made later */
    struct event *fail_ev;          /* a delayed FATAL (rate-limited login failures) */
    struct event *login_timer;      /* client_login_timeout: freed once the session is ready;
                                       cancel_wait_timeout for a CancelRequest's connection */
    char fail_sqlstate[6];
    char *fail_message;             /* allocated with fail_ev */

    /* pool_mode "transaction" (pool.h): `server` is lent->sb while a
     * server is lent, NULL between transactions */
    struct pool_server *lent;
    struct pool_waiter waiter;      /* queued for a server when waiter.in is set */
    char *pool_options;             /* startup options and parameters the pool is keyed by */
    char pin_reason[64];            /* keeps `lent` for good, and why ("": not pinned) */
    struct param_values *params;    /* the tracked parameters as this client has them (from its welcome) */
    struct reply_queue replies;     /* what the lent server owes (statement_map.h) */
    struct unnamed_statement unnamed; /* its unnamed statement, kept across servers (statement_map.h) */
    struct carried_sets carried;    /* its SETs the pool carries to each server it borrows */
};

/* Takes ownership of an accepted socket. */
void session_accept(struct server *srv, evutil_socket_t fd, const struct sockaddr *addr, int addrlen);
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
 * keeping srv->counts right. A transition the table forbids is a bug: it
 * asserts in debug builds (PGT_DEBUG); otherwise it is logged as an error
 * and that one session is closed. */
void session_set_state(struct session *s, enum session_state to);
/* Finds the session a client's CancelRequest names (NULL: none). */
struct session *session_find_by_cancel_key(struct server *srv, uint32_t pid, uint32_t key);
/* Cancels what the session named by (pid, key) is running upstream: 1 when
 * a session here matched and the request is on its way (done(srv, waiter)
 * follows once Postgres has closed the connection carrying it), -1 when
 * one matched but the request could not be sent, 0 when none matched. A
 * peer_cancel_fn. Never forwards to another proxy: the peer listener
 * relies on that to keep a request from going round in circles. */
int session_cancel(struct server *srv, uint32_t pid, uint32_t key, cancel_done_fn done, uint64_t waiter);
/* Asks the session to end at its next boundary (shutdown). */
void session_end_at_boundary(struct session *s);
/* At a boundary during a pause: prepares the session's named statements
 * again upstream, answers swallowed. Returns how many. */
int session_reprepare(struct session *s);
/* The migration name a client declared with -c pgtandem.version=NAME in
 * its startup options, or application_name "...@NAME"; NULL if none (the
 * session also reads a database "...@NAME": session.database_version). */
char *session_declared_version(const struct startup_packet *sp);

#endif

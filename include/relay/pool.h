/* Transaction pooling (pool_mode "transaction"): server connections the
 * proxy logs in itself, kept in pools keyed by database, user, startup
 * options and version schema, and lent to a client session for one
 * transaction at a time. A session that declared a migration version gets
 * servers of that version's pool, whose search_path was set at their login,
 * so routing costs nothing per transaction.
 *
 * The pool owns its servers; a lent server's stream buffer is driven by the
 * session that borrowed it (session_relay.c) until the session gives it back at a
 * transaction boundary (ReadyForQuery 'I'). Sessions that wait for a server
 * queue per pool, first come first served, for at most query_wait_timeout. */
#ifndef PGTANDEM_POOL_H
#define PGTANDEM_POOL_H

#include <jansson.h>
#include <stdint.h>
#include <string.h>

#include "auth.h"
#include "pin.h"
#include "pool_carried.h"
#include "pool_server_state.h"
#include "reply_queue.h"
#include "relay.h"

struct evbuffer;
struct sbuf;
struct upstream_connect;
struct pool;
struct pool_server;

/* Who waits for a server: the pool knows its waiters only through this,
 * embedded in whatever waits (a client session). `lent` or `failed` is
 * called once, from the pool, after the waiter left the queue. */
struct pool_waiter;
struct pool_waiter_ops {
    void (*lent)(struct pool_waiter *w, struct pool_server *ps);
    void (*failed)(struct pool_waiter *w, const char *sqlstate, const char *message);
};
struct pool_waiter {
    struct pool_waiter *next;
    struct pool *in;                   /* the pool it waits in; NULL: not waiting */
    uint64_t since_us;
    const struct pool_waiter_ops *ops;
};

#define POOL_CANCELS_MAX 4


struct pool_server {
    struct pool_server *prev, *next;   /* in its pool */
    struct pool *pool;
    uint64_t id;
    enum pool_server_state state;      /* moved only by pool_server_set_state */
    struct sbuf *sb;
    struct upstream_connect *connecting;
    struct auth_state *auth;           /* during login */
    uint32_t pid, key;                 /* BackendKeyData: where a cancel goes */
    uint32_t backend_pid;              /* pg_backend_pid() when the fleet asked (an edge's PID may differ) */
    int probing;                       /* that question's answer is still due (login) */
    int state_unknown;                 /* a statement the pool ran on it for a borrower failed: closed when given back */
    uint64_t created_us, idle_since_us;
    uint64_t lends;
    uint64_t last_borrower;            /* the session id it was last lent to (0: none yet) */
    uint64_t stmt_clock;               /* counts binds: stmt_used holds its value at each statement's last */
    struct param_values params;        /* what this server's session has set */
    struct carried_sets carried;       /* SETs the last borrowers left on it */
    uint64_t *stmts;                   /* hashes of the clients' statements prepared here (statement_map.c prepares them) */
    uint64_t *stmt_used;               /* when each was last bound: the oldest goes first */
    uint32_t nstmts;
    uint32_t owed_rfq;                 /* ReadyForQuery of our Close messages still due while idle */
    struct reply_queue replies;        /* while lent: what it owes its borrower (statement_map.h) */
    struct {                           /* cancels on their way to this server's backend */
        cancel_done_fn done;
        uint64_t waiter;
    } cancels[POOL_CANCELS_MAX];
    int ncancels;
};

struct pool {
    struct pool *next;
    struct relay *relay;
    char *database, *user, *options;   /* options: the client's, without pgtandem.version */
    char *schema;                      /* version schema first on the search_path; NULL: none */
    struct pool_server *servers;
    struct pool_server_counts counts;  /* its servers per state (pool_server_set_state keeps them) */
    struct pool_waiter *wait_head, *wait_tail;
    uint32_t nwaiting;
    uint64_t waited_us_max;            /* the longest wait so far (since start) */
    struct auth_credentials creds;     /* from the last client of this user who logged in */
    int have_creds;
    struct param_values welcome;       /* tracked defaults from the first login */
    struct evbuffer *welcome_msgs;     /* its ParameterStatus messages, replayed to each client */
    int welcome_ready;
    char last_error[320];              /* the last login failure, for waiters and /pools */
    char last_sqlstate[6];
    /* After a login failed (not for want of a slot) the pool is "failing":
     * until login_retry_at_us a client that finds no server is refused at
     * once (as PgBouncer's server_login_retry), then one login is tried.
     * Until a login has succeeded since, one login at a time, with the
     * credentials of the latest client (a users file fixed and reloaded). */
    int login_failing;
    int logins_proven;                 /* a login succeeded since the last failure */
    uint64_t login_retry_at_us;        /* no new login before (0: any time) */
    uint64_t login_failures;
    uint64_t lends_total, waits_total, wait_timeouts;
    uint64_t stmt_hits, stmt_misses;   /* a bound statement was on the lent server / prepared first */
};

/* Its servers still connecting or logging in. */
uint32_t pool_logging_in(const struct pool *p);
/* Moves the server to `to` through the state table (pool_server_state.c),
 * keeping its pool's counts right. A move the table forbids is a bug: it
 * aborts in debug builds (PGT_DEBUG); otherwise it is logged as an error
 * and made, so the counts still say where every server is. */
void pool_server_set_state(struct pool_server *ps, enum pool_server_state to);

/* Two of a pool's names (database, user, options, schema) are one: both
 * absent, or the same text. */
static inline int pool_same(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* The pool a session with these startup values belongs to now (schema:
 * the version schema of the current route, NULL for none); created on first
 * use. NULL when out of memory. */
struct pool *pool_for(struct relay *relay, const char *database, const char *user, const char *options,
                      const char *schema);
/* Keeps the credentials a client just proved, for the pool's next logins:
 * the first client's, and while logins are not proven to work, the
 * latest's. */
void pool_take_credentials(struct pool *p, const struct auth_credentials *c);
/* Whether the pool wants a client's credentials (see above). */
int pool_wants_credentials(const struct pool *p);
/* Frees a pool whose servers are gone (pool_free_all). */
void pool_destroy(struct pool *p);

/* Lends an idle server now (returned), or queues `w` and returns NULL:
 * w->lent or w->failed follows (w->failed at once, before pool_acquire
 * returns, when the pool's logins are failing and it has no server). */
struct pool_server *pool_acquire(struct pool *p, struct pool_waiter *w);
/* `w` no longer waits (its client closed). */
void pool_forget_waiter(struct pool_waiter *w);
/* The session is done with the server: back to the pool when `clean` (a
 * ReadyForQuery 'I' with nothing in flight) and its session state is known
 * (state_unknown not set), else closed. */
void pool_release(struct pool_server *ps, int clean);

/* ---- the clients' statements prepared on a server (statement_map.c) ---- */

/* The server-side name of a statement: "pgt_" and its hash in hex. */
void pool_statement_name(char out[24], uint64_t hash);
/* Appends a Close of that statement. */
void pool_write_close_statement(struct evbuffer *out, uint64_t hash);
/* 1 when the server has the statement (now its most recently used), 0 when not. */
int pool_server_has_statement(struct pool_server *ps, uint64_t hash);
/* Records the statement as prepared on the server. At max_prepared_statements
 * the least recently used one makes room: its hash in *evicted, for the
 * caller to close (0: none). -1 when out of memory. */
int pool_server_add_statement(struct pool_server *ps, uint64_t hash, uint64_t *evicted);
/* The statement is not on the server after all (its Parse failed). */
void pool_server_forget_statement(struct pool_server *ps, uint64_t hash);
/* The server has none of them any more: a client's DEALLOCATE ALL or
 * DISCARD ALL ran on it. Each is prepared again where it is next bound. */
void pool_server_lost_statements(struct pool_server *ps);
/* Appends a Close of every statement the server has and a Sync, and
 * empties the cache; 1 when anything was appended (its ReadyForQuery is
 * owed), 0 otherwise. */
int pool_server_close_statements(struct pool_server *ps, struct evbuffer *out);

/* Sends a CancelRequest to the lent server's backend. Until Postgres has
 * closed the connection that carried it, the server is not lent to anyone
 * else: the signal must not reach the next borrower's query. Then
 * done(relay, waiter) as for upstream_send_cancel. CANCEL_SENT or
 * CANCEL_NOT_SENT. */
enum cancel_result pool_cancel(struct pool_server *ps, cancel_done_fn done, uint64_t waiter);

/* The tables changed under every prepared statement (a cutover): idle
 * servers close theirs (replies swallowed by whoever borrows them next),
 * so they are prepared again on demand. Lent servers are their session's
 * business (session_reprepare). */
void pool_forget_statements(struct relay *relay);

/* The version route changed: idle servers of pools no session is routed to
 * any more are closed, freeing their slots under the database's limit. */
void pool_route_changed(struct relay *relay);
/* Closes every server and frees every pool (exit). Waiting sessions must
 * be gone already. */
void pool_free_all(struct relay *relay);
/* Starts the pools' housekeeping timer (idle timeout, lifetime, waits). */
int pool_start_janitor(struct relay *relay);

/* Appends the backend PID of every pool server (the fleet counts them as
 * this proxy's, not as sessions bypassing it). */
void pool_append_backend_pids(const struct relay *relay, json_t *pids);

/* How many server connections all pools hold. */
uint32_t pool_count_servers(const struct relay *relay);

/* GET /pools and /status: per pool clients waiting, servers active/idle,
 * the longest wait, totals. */
json_t *pool_describe_all(struct relay *relay);

#endif

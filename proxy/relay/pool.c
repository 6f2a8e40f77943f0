/* Transaction pools (see pool.h): logging server connections in, lending
 * and taking them back, the wait queue, and the janitor that closes idle
 * and old servers and times out waits (finding a session's pool:
 * pool_find.c). */
#include "pool.h"

#include <assert.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "migration_sql.h"
#include "proto.h"
#include "sbuf.h"
#include "search_path.h"
#include "upstream.h"

#define LOGIN_MAX_MESSAGE 65536u
#define JANITOR_INTERVAL_MS 250

static void login_readable(struct sbuf *sb, void *arg);
static void idle_readable(struct sbuf *sb, void *arg);
static void server_failed(struct sbuf *sb, void *arg, int eof, const char *why);
static void nothing_drained(struct sbuf *sb, void *arg) { (void)sb; (void)arg; }
static void nothing_ready(struct sbuf *sb, void *arg) { (void)sb; (void)arg; }

static const struct sbuf_ops login_ops = {login_readable, nothing_drained, nothing_ready, server_failed};
static const struct sbuf_ops idle_ops = {idle_readable, nothing_drained, nothing_ready, server_failed};

/* ---- the wait queue ---- */

static void enqueue(struct pool *p, struct pool_waiter *w)
{
    w->next = NULL;
    w->in = p;
    w->since_us = relay_now_us(p->relay);
    if (p->wait_tail)
        p->wait_tail->next = w;
    else
        p->wait_head = w;
    p->wait_tail = w;
    p->nwaiting++;
    p->waits_total++;
}

static struct pool_waiter *dequeue(struct pool *p)
{
    struct pool_waiter *w = p->wait_head;
    if (!w)
        return NULL;
    p->wait_head = w->next;
    if (!p->wait_head)
        p->wait_tail = NULL;
    p->nwaiting--;
    w->next = NULL;
    w->in = NULL;
    uint64_t waited = relay_now_us(p->relay) - w->since_us;
    if (waited > p->waited_us_max)
        p->waited_us_max = waited;
    return w;
}

void pool_forget_waiter(struct pool_waiter *w)
{
    struct pool *p = w->in;
    struct pool_waiter *prev = NULL;
    for (struct pool_waiter *it = p ? p->wait_head : NULL; it; prev = it, it = it->next) {
        if (it != w)
            continue;
        if (prev)
            prev->next = w->next;
        else
            p->wait_head = w->next;
        if (p->wait_tail == w)
            p->wait_tail = prev;
        p->nwaiting--;
        w->next = NULL;
        w->in = NULL;
        return;
    }
}

/* ---- servers ---- */

static uint32_t servers_of(const struct pool *p)
{
    return pool_server_counts_total(&p->counts);
}

static uint32_t in_state(const struct pool *p, enum pool_server_state st)
{
    return p->counts.in_state[st];
}

static uint32_t servers_of_database(const struct relay *relay, const char *database)
{
    uint32_t n = 0;
    for (const struct pool *p = relay->pools; p; p = p->next)
        if (pool_same(p->database, database))
            n += servers_of(p);
    return n;
}

uint32_t pool_logging_in(const struct pool *p)
{
    return pool_server_counts_logging_in(&p->counts);
}

void pool_server_set_state(struct pool_server *ps, enum pool_server_state to)
{
    assert(ps && ps->pool);
    enum pool_server_state from = ps->state;
    if (!pool_server_state_allowed(from, to)) {
        log_error("pool server %llu (database %s, user %s): forbidden state move %s -> %s",
                  (unsigned long long)ps->id, ps->pool->database, ps->pool->user, pool_server_state_name(from),
                  pool_server_state_name(to));
#ifdef PGT_DEBUG
        abort();
#endif
    }
    pool_server_counts_move(&ps->pool->counts, from, to);
    ps->state = to;
}

static void unlink_server(struct pool_server *ps)
{
    struct pool *p = ps->pool;
    if (ps->prev)
        ps->prev->next = ps->next;
    else
        p->servers = ps->next;
    if (ps->next)
        ps->next->prev = ps->prev;
    pool_server_counts_leave(&p->counts, ps->state);
}

static void kick_waiters(struct relay *relay);

/* Everything a server owns; it is out of its pool's list already. */
static void free_server(struct pool_server *ps)
{
    uint32_t pid = ps->backend_pid ? ps->backend_pid : ps->pid;
    if (pid && ps->pool)
        relay_backend_ended(ps->pool->relay, pid);
    if (ps->connecting)
        upstream_connect_cancel(ps->connecting);
    sbuf_free(ps->sb);
    auth_free(ps->auth);
    free(ps->stmts);
    free(ps->stmt_used);
    carried_sets_free(&ps->carried);
    reply_queue_free(&ps->replies);
    free(ps);
}

static void close_server(struct pool_server *ps, const char *why)
{
    struct pool *p = ps->pool;
    /* cancels still on their way: cancel_arrived finds no server and drops
     * them, so their clients are told here */
    for (int i = 0; i < ps->ncancels; i++)
        ps->cancels[i].done(p->relay, ps->cancels[i].waiter);
    ps->ncancels = 0;
    log_debug("pool server %llu (database %s, user %s) closed: %s", (unsigned long long)ps->id, p->database,
              p->user, why);
    unlink_server(ps);
    free_server(ps);
    if (!p->relay->shutting_down)
        kick_waiters(p->relay);
}

/* A login failed. Unless Postgres only had no slot free for a moment
 * (53300, 57P03: a backend the proxy closed may not have exited yet; the
 * janitor tries again), the pool is failing: no login before
 * server_login_retry has passed (trying again at once would hammer the
 * upstream while the clients wait out their login timeout), and when no
 * server of the pool is left to serve its waiters, they hear why now. */
static void login_failed(struct pool_server *ps, const char *sqlstate, const char *why)
{
    struct pool *p = ps->pool;
    snprintf(p->last_error, sizeof p->last_error, "%s", why);
    snprintf(p->last_sqlstate, sizeof p->last_sqlstate, "%s", sqlstate);
    int transient = !strcmp(sqlstate, SQLSTATE_TOO_MANY_CONNECTIONS) || !strcmp(sqlstate, SQLSTATE_CANNOT_CONNECT_NOW);
    int retry_ms = transient ? JANITOR_INTERVAL_MS : p->relay->cfg.server_login_retry_ms;
    p->login_retry_at_us = relay_now_us(p->relay) + (uint64_t)retry_ms * 1000;
    p->login_failures++;
    if (!transient) {
        p->login_failing = 1;
        p->logins_proven = 0;
    }
    log_warn("pool (database %s, user %s): server login failed: %s [%s]%s", p->database, p->user, why, sqlstate,
             transient ? "" : "; clients without a server are refused until a login is tried again");
    close_server(ps, why); /* sqlstate and why may be the server's: from here on, the pool's copies */
    if (servers_of(p) || transient)
        return;
    struct pool_waiter *w;
    while ((w = dequeue(p)))
        w->ops->failed(w, p->last_sqlstate, p->last_error);
}

/* A login succeeded: the pool serves again, logins in parallel. */
static void login_worked(struct pool *p)
{
    if (p->login_failing)
        log_info("pool (database %s, user %s): server login works again", p->database, p->user);
    p->login_failing = 0;
    p->logins_proven = 1;
    p->login_retry_at_us = 0;
    p->last_error[0] = '\0';
    p->last_sqlstate[0] = '\0';
}

/* The StartupMessage of a pooled server: the pool's user, database and
 * options, with the version schema's search_path and Neon's endpoint. */
static int send_startup(struct pool_server *ps)
{
    struct pool *p = ps->pool;
    const char *endpoint = p->relay->cfg.neon_endpoint;
    char options[2048]; /* a chain's path of eight schemas and the client's own path fit */
    snprintf(options, sizeof options, "%s", p->options ? p->options : "");
    size_t used = strlen(options);
    if (endpoint && !strstr(options, "endpoint="))
        used += (size_t)snprintf(options + used, sizeof options - used, " endpoint=%s", endpoint);
    /* the route after the client's options, so it wins, with the client's
     * own path (in its options: pool_options_of) after the route's schema */
    char own[PIN_SEARCH_PATH_MAX];
    int has_own = p->schema && p->options ? search_path_from_options(p->options, own, sizeof own) : 0;
    if (p->schema && used < sizeof options &&
        mig_search_path_option(options + used, sizeof options - used, p->schema, has_own > 0 ? own : NULL) != 0)
        return -1;
    struct evbuffer *params = evbuffer_new();
    if (!params)
        return -1;
    proto_add_startup_param(params, "user", p->user, NULL);
    proto_add_startup_param(params, "database", p->database, NULL);
    if (options[0])
        proto_add_startup_param(params, "options", options, NULL);
    proto_add_startup(ps->sb->out, params);
    evbuffer_free(params);
    sbuf_flush(ps->sb);
    return 0;
}

static void on_connected(void *ctx, struct sbuf *sb, const char *error)
{
    struct pool_server *ps = ctx;
    ps->connecting = NULL;
    if (!sb) {
        ps->pool->relay->metrics.connections_failed++;
        login_failed(ps, SQLSTATE_CONNECTION_FAILURE, error);
        return;
    }
    ps->sb = sb;
    sbuf_set_ops(sb, &login_ops, ps);
    sb->out_low = ps->pool->relay->cfg.buffer_bytes / 2;
    pool_server_set_state(ps, PSRV_LOGIN);
    ps->auth = auth_begin_upstream(ps->pool->relay, &ps->pool->creds, ps->pool->user, ps->id);
    if (!ps->auth || send_startup(ps) != 0)
        login_failed(ps, SQLSTATE_CONNECTION_FAILURE, "out of memory (or options too long) logging in");
}

/* 0, or -1 when out of memory (nothing to wait for then). */
static int open_server(struct pool *p)
{
    struct pool_server *ps = calloc(1, sizeof *ps);
    if (!ps)
        return -1;
    ps->pool = p;
    ps->id = ++p->relay->next_pool_server_id;
    ps->state = PSRV_CONNECTING; /* entering the pool is not a move */
    pool_server_counts_enter(&p->counts, PSRV_CONNECTING);
    ps->created_us = relay_now_us(p->relay);
    ps->next = p->servers;
    if (p->servers)
        p->servers->prev = ps;
    p->servers = ps;
    ps->connecting = upstream_connect_start(p->relay, on_connected, ps);
    if (!ps->connecting) { /* not close_server: it would try again at once, and again */
        snprintf(p->last_error, sizeof p->last_error, "out of memory opening a server connection");
        unlink_server(ps);
        free(ps);
        return -1;
    }
    return 0;
}

/* Under the database's limit, an idle server of another pool of the same
 * database makes room (its pool had nobody waiting for it). */
static int make_room(struct pool *p)
{
    for (struct pool *o = p->relay->pools; o; o = o->next) {
        if (o == p || !pool_same(o->database, p->database) || !in_state(o, PSRV_IDLE) || o->nwaiting)
            continue;
        for (struct pool_server *ps = o->servers; ps; ps = ps->next)
            if (ps->state == PSRV_IDLE) {
                close_server(ps, "room for another pool of the same database");
                return 1;
            }
    }
    return 0;
}

/* No login now: one failed lately, or logins are not proven to work and
 * one is on its way already (its outcome is what the others would learn,
 * at the upstream's cost). */
static int logins_held(struct pool *p)
{
    if (p->login_retry_at_us && relay_now_us(p->relay) < p->login_retry_at_us)
        return 1;
    return !p->logins_proven && pool_logging_in(p) > 0;
}

static int may_open(struct pool *p)
{
    const struct config *cfg = &p->relay->cfg;
    if (!p->have_creds || p->relay->shutting_down || servers_of(p) >= (uint32_t)cfg->pool_size || logins_held(p))
        return 0;
    return !cfg->max_db_connections || servers_of_database(p->relay, p->database) < (uint32_t)cfg->max_db_connections;
}

/* Opens servers for the waiters no login in progress will serve. */
static void open_for_waiters(struct pool *p)
{
    /* a cancelling server is free again without a login */
    while (p->nwaiting > pool_logging_in(p) + in_state(p, PSRV_IDLE) + in_state(p, PSRV_CANCELLING)) {
        if (!may_open(p)) {
            const struct config *cfg = &p->relay->cfg;
            if (!p->have_creds || servers_of(p) >= (uint32_t)cfg->pool_size || logins_held(p) || !make_room(p))
                return;
            continue; /* make_room closed one: try again */
        }
        if (open_server(p) != 0)
            return; /* the janitor tries again */
    }
}

static void kick_waiters(struct relay *relay)
{
    for (struct pool *p = relay->pools; p; p = p->next)
        if (p->nwaiting)
            open_for_waiters(p);
}

static void lend(struct pool_server *ps)
{
    pool_server_set_state(ps, PSRV_LENT);
    ps->lends++;
    ps->pool->lends_total++;
}

/* A server finished its login or its transaction: idle, and handed to the
 * first waiter once this loop turn's events are all handled (as PgBouncer
 * does once per loop), so the replies of a turn reach their clients
 * together and the servers get their next queries together. */
static void became_free(struct pool_server *ps)
{
    struct pool *p = ps->pool;
    pool_server_set_state(ps, PSRV_IDLE);
    ps->idle_since_us = relay_now_us(p->relay);
    sbuf_set_ops(ps->sb, &idle_ops, ps);
    sbuf_resume_read(ps->sb);
    if (p->nwaiting && p->relay->pool_handoff)
        event_active(p->relay->pool_handoff, EV_TIMEOUT, 0);
}

static int too_old(const struct pool_server *ps, uint64_t now)
{
    int lifetime = ps->pool->relay->cfg.server_lifetime_ms;
    return lifetime && now - ps->created_us > (uint64_t)lifetime * 1000;
}

/* The first idle server young enough to lend; older ones are closed. */
static struct pool_server *first_idle(struct pool *p)
{
    uint64_t now = relay_now_us(p->relay);
    struct pool_server *ps = p->servers, *next;
    for (; ps && in_state(p, PSRV_IDLE); ps = next) {
        next = ps->next;
        if (ps->state != PSRV_IDLE)
            continue;
        if (!too_old(ps, now))
            return ps;
        close_server(ps, "server_lifetime reached");
    }
    return NULL;
}

/* Waiters take idle servers in the order they came. A lent server may come
 * straight back (its client failed), so each turn looks again. */
static void hand_off(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct relay *relay = arg;
    for (struct pool *p = relay->pools; p; p = p->next) {
        struct pool_server *ps;
        while (p->nwaiting && (ps = first_idle(p))) {
            struct pool_waiter *w = dequeue(p);
            lend(ps);
            w->ops->lent(w, ps);
        }
    }
}

/* PgBouncer's words for a pool whose logins fail, with why (the client
 * cannot read the proxy's log). */
static void refuse_while_failing(struct pool *p, struct pool_waiter *w)
{
    char why[480];
    uint64_t now = relay_now_us(p->relay);
    uint64_t left_ms = p->login_retry_at_us > now ? (p->login_retry_at_us - now + 999) / 1000 : 0;
    snprintf(why, sizeof why, "server login has been failing, try again later (server_login_retry, %llu ms left): %s",
             (unsigned long long)left_ms, p->last_error);
    w->ops->failed(w, p->last_sqlstate[0] ? p->last_sqlstate : SQLSTATE_CONNECTION_FAILURE, why);
}

struct pool_server *pool_acquire(struct pool *p, struct pool_waiter *w)
{
    assert(p && w && !w->in);
    struct pool_server *ps = p->nwaiting ? NULL : first_idle(p); /* no overtaking the queue */
    if (ps) {
        lend(ps);
        return ps;
    }
    if (p->login_failing && !servers_of(p) && logins_held(p)) {
        refuse_while_failing(p, w);
        return NULL;
    }
    enqueue(p, w); /* an idle server now is one became_free already scheduled for the handoff */
    open_for_waiters(p);
    return NULL;
}

void pool_release(struct pool_server *ps, int clean)
{
    assert(ps && ps->state == PSRV_LENT);
    if (!clean || ps->state_unknown || ps->pool->relay->shutting_down || too_old(ps, relay_now_us(ps->pool->relay))) {
        close_server(ps, ps->state_unknown ? "a statement the pool ran on it failed: its session state is not known"
                         : clean            ? "server_lifetime reached"
                                            : "given back mid-transaction or with results pending");
        return;
    }
    if (ps->ncancels) {
        pool_server_set_state(ps, PSRV_CANCELLING); /* cancel_arrived frees it */
        sbuf_set_ops(ps->sb, &idle_ops, ps);
        return;
    }
    became_free(ps);
}

/* A cancel for `waiter` was delivered (or given up on): its client hears
 * so, and a server given back meanwhile is free again. */
static void cancel_arrived(struct relay *relay, uint64_t waiter)
{
    for (struct pool *p = relay->pools; p; p = p->next)
        for (struct pool_server *ps = p->servers; ps; ps = ps->next)
            for (int i = 0; i < ps->ncancels; i++) {
                if (ps->cancels[i].waiter != waiter)
                    continue;
                cancel_done_fn done = ps->cancels[i].done;
                ps->cancels[i] = ps->cancels[--ps->ncancels];
                if (!ps->ncancels && ps->state == PSRV_CANCELLING)
                    became_free(ps);
                done(relay, waiter);
                return;
            }
}

enum cancel_result pool_cancel(struct pool_server *ps, cancel_done_fn done, uint64_t waiter)
{
    if (ps->ncancels == POOL_CANCELS_MAX ||
        upstream_send_cancel(ps->pool->relay, ps->pid, ps->key, cancel_arrived, waiter) != 0)
        return CANCEL_NOT_SENT;
    ps->cancels[ps->ncancels].done = done;
    ps->cancels[ps->ncancels++].waiter = waiter;
    return CANCEL_SENT;
}

/* ---- reading from servers the pool holds ---- */

/* An ErrorResponse's message and SQLSTATE, for the log and waiters. */
static void error_text(const uint8_t *msg, uint32_t len, char *out, size_t cap, char sqlstate[6])
{
    snprintf(out, cap, "the server refused the login");
    snprintf(sqlstate, 6, "%s", SQLSTATE_CONNECTION_FAILURE);
    for (uint32_t i = PROTO_HEADER_LEN; i < len && msg[i];) {
        const char *field = (const char *)msg + i + 1;
        size_t n = strnlen(field, len - i - 1);
        if (msg[i] == 'M')
            snprintf(out, cap, "%.*s", (int)n, field);
        else if (msg[i] == 'C' && n == 5)
            snprintf(sqlstate, 6, "%.5s", field);
        i += (uint32_t)n + 2;
    }
}

/* One whole message of a server the pool holds; NULL while incomplete. */
static const uint8_t *next_whole(struct pool_server *ps, uint32_t *len, int *bad)
{
    struct evbuffer *in = ps->sb->in;
    size_t avail = evbuffer_get_length(in);
    uint8_t head[PROTO_HEADER_LEN];
    if (avail < PROTO_HEADER_LEN)
        return NULL;
    evbuffer_copyout(in, head, sizeof head);
    struct msg_header h;
    if (proto_read_header(head, avail, LOGIN_MAX_MESSAGE, &h) != HEADER_OK) {
        *bad = 1;
        return NULL;
    }
    if (avail < h.length + 1u)
        return NULL;
    *len = h.length + 1;
    return evbuffer_pullup(in, *len);
}

/* Hands each whole message of a server the pool holds to `handle`, NULL
 * for one of an impossible length. It returns 1 to go on (the message is
 * drained then), 0 once the server was closed or changed hands. */
static void read_messages(struct pool_server *ps, int (*handle)(struct pool_server *, const uint8_t *, uint32_t))
{
    for (;;) {
        uint32_t len = 0;
        int bad = 0;
        const uint8_t *msg = next_whole(ps, &len, &bad);
        if (bad) {
            handle(ps, NULL, 0);
            return;
        }
        if (!msg || !handle(ps, msg, len))
            return;
        evbuffer_drain(ps->sb->in, len);
    }
}

/* In a fleet, after login: the backend's PID as pg_stat_activity names
 * it, since an edge in front of Postgres (Neon's proxy) hands out a
 * BackendKeyData PID of its own. */
static void ask_backend_pid(struct pool_server *ps)
{
    proto_add_query(ps->sb->out, PROTO_PID_PROBE_SQL);
    sbuf_flush(ps->sb);
    ps->probing = 1;
}

/* During login: 1 to go on, 0 when the login is over (free or closed). */
static int login_message(struct pool_server *ps, const uint8_t *msg, uint32_t len)
{
    struct pool *p = ps->pool;
    char why[256];
    switch (msg ? msg[0] : 0) {
    case 'R': {
        enum auth_result r = auth_upstream_message(ps->auth, ps->sb, msg, len);
        if (r == AUTH_FAILED) {
            login_failed(ps, auth_failure(ps->auth)->sqlstate, auth_failure(ps->auth)->message);
            return 0;
        }
        return 1;
    }
    case 'S':
        if (param_values_note(&ps->params, msg, len) == 0 && !p->welcome_ready) {
            param_values_note(&p->welcome, msg, len);
            evbuffer_add(p->welcome_msgs, msg, len);
        }
        return 1;
    case 'K':
        if (len == 13) {
            ps->pid = proto_get_u32(msg + 5);
            ps->key = proto_get_u32(msg + 9);
        }
        return 1;
    case 'N':
        return 1;
    case 'E': {
        char sqlstate[6];
        error_text(msg, len, why, sizeof why, sqlstate);
        login_failed(ps, sqlstate, why);
        return 0;
    }
    case 'Z':
        if (!ps->probing && p->relay->probe_backend_pids && !ps->backend_pid) {
            ask_backend_pid(ps);
            return 1;
        }
        auth_free(ps->auth);
        ps->auth = NULL;
        ps->probing = 0;
        p->welcome_ready = 1;
        login_worked(p);
        evbuffer_drain(ps->sb->in, len);
        became_free(ps);
        open_for_waiters(p); /* the logins held back while this one was on trial */
        return 0;
    case 'T': case 'C': case 'D':
        if (!ps->probing)
            break;
        if (msg[0] == 'D') /* any other row: the BackendKeyData PID stands */
            proto_read_pid_row(msg, len, &ps->backend_pid);
        return 1;
    case 0:
        login_failed(ps, SQLSTATE_PROTOCOL_VIOLATION, "invalid message length from the server during login");
        return 0;
    default:
        break;
    }
    login_failed(ps, SQLSTATE_PROTOCOL_VIOLATION, "unexpected message from the server during login");
    return 0;
}

/* An idle server may still report a parameter or a notice, or answer the
 * Close messages of pool_forget_statements; anything else (a FATAL as
 * Postgres terminates it, bytes nobody asked for) ends it. */
static int idle_message(struct pool_server *ps, const uint8_t *msg, uint32_t len)
{
    int owed = msg && ps->owed_rfq && (msg[0] == '3' || msg[0] == 'Z');
    if (!msg || (msg[0] != 'S' && msg[0] != 'N' && !owed)) {
        char why[256] = "unexpected bytes from an idle server", sqlstate[6];
        if (msg && msg[0] == 'E')
            error_text(msg, len, why, sizeof why, sqlstate);
        close_server(ps, why);
        return 0;
    }
    if (msg[0] == 'S')
        param_values_note(&ps->params, msg, len);
    if (owed && msg[0] == 'Z')
        ps->owed_rfq--;
    return 1;
}

static void login_readable(struct sbuf *sb, void *arg)
{
    (void)sb;
    read_messages(arg, login_message);
}

static void idle_readable(struct sbuf *sb, void *arg)
{
    (void)sb;
    read_messages(arg, idle_message);
}

static void server_failed(struct sbuf *sb, void *arg, int eof, const char *why)
{
    struct pool_server *ps = arg;
    (void)sb;
    if (ps->state == PSRV_LOGIN)
        login_failed(ps, SQLSTATE_CONNECTION_FAILURE, eof ? "the server closed the connection during login" : why);
    else
        close_server(ps, eof ? "closed by the server" : why);
}

/* ---- housekeeping ---- */

static void time_out_waiters(struct pool *p, uint64_t now)
{
    int ms = p->relay->cfg.query_wait_timeout_ms;
    while (ms && p->wait_head && now - p->wait_head->since_us > (uint64_t)ms * 1000) {
        struct pool_waiter *w = dequeue(p);
        p->wait_timeouts++;
        char why[512];
        snprintf(why, sizeof why,
                 "no server connection within query_wait_timeout (%d s): pool for database %s, user %s has %u of "
                 "%d in use%s%s",
                 ms / 1000, p->database, p->user, servers_of(p), p->relay->cfg.pool_size,
                 p->last_error[0] ? "; last login error: " : "", p->last_error);
        w->ops->failed(w, SQLSTATE_TOO_MANY_CONNECTIONS, why);
    }
}

static void close_stale(struct pool *p, uint64_t now)
{
    int idle_ms = p->relay->cfg.server_idle_timeout_ms;
    struct pool_server *next;
    for (struct pool_server *ps = p->servers; ps; ps = next) {
        next = ps->next;
        if (ps->state != PSRV_IDLE)
            continue;
        if (too_old(ps, now))
            close_server(ps, "server_lifetime reached");
        else if (idle_ms && now - ps->idle_since_us > (uint64_t)idle_ms * 1000)
            close_server(ps, "server_idle_timeout reached");
    }
}

static void janitor_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct relay *relay = arg;
    uint64_t now = relay_now_us(relay);
    for (struct pool *p = relay->pools; p; p = p->next) {
        time_out_waiters(p, now);
        close_stale(p, now);
    }
    kick_waiters(relay); /* logins that found no slot free are tried again */
}

int pool_start_janitor(struct relay *relay)
{
    relay->pool_janitor = event_new(relay->base, -1, EV_PERSIST, janitor_cb, relay);
    relay->pool_handoff = event_new(relay->base, -1, 0, hand_off, relay);
    struct timeval tv = {0, JANITOR_INTERVAL_MS * 1000};
    return relay->pool_janitor && relay->pool_handoff && event_add(relay->pool_janitor, &tv) == 0 ? 0 : -1;
}

void pool_forget_statements(struct relay *relay)
{
    for (struct pool *p = relay->pools; p; p = p->next)
        for (struct pool_server *ps = p->servers; ps; ps = ps->next)
            if (ps->state == PSRV_IDLE && pool_server_close_statements(ps, ps->sb->out)) {
                ps->owed_rfq++;
                sbuf_flush(ps->sb);
            }
}

void pool_route_changed(struct relay *relay)
{
    for (struct pool *p = relay->pools; p; p = p->next) {
        if (version_route_has_path(&relay->route, p->schema))
            continue;
        struct pool_server *next;
        for (struct pool_server *ps = p->servers; ps; ps = next) {
            next = ps->next;
            if (ps->state == PSRV_IDLE)
                close_server(ps, "its version route ended");
        }
    }
}

void pool_free_all(struct relay *relay)
{
    if (relay->pool_janitor) {
        event_free(relay->pool_janitor);
        relay->pool_janitor = NULL;
    }
    if (relay->pool_handoff) {
        event_free(relay->pool_handoff);
        relay->pool_handoff = NULL;
    }
    while (relay->pools) {
        struct pool *p = relay->pools;
        relay->pools = p->next;
        while (p->servers) {
            struct pool_server *ps = p->servers;
            p->servers = ps->next;
            free_server(ps);
        }
        pool_destroy(p);
    }
}

/* Roles from the database (see auth_lookup.h): a few connections, one
 * lookup in flight on each, a FIFO of users waiting for a free one, and a
 * small cache of answers. Each user's lookup has its own deadline, counted
 * from when its first login asked, queueing included: a slow or stuck
 * lookup costs its own logins that bound and nobody else anything. */
#include "auth_lookup.h"

#include <event2/event.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "pgasync.h"

#define CACHE_MAX 4096 /* entries; past it the oldest answer goes */

/* One login waiting for an answer; ctx is NULL once cancelled. */
struct waiter {
    auth_lookup_fn fn;
    void *ctx;
    struct waiter *next;
};

/* One user's lookup, queued or in flight: every login of that user waits
 * on it (a burst of one service's logins costs one lookup). */
struct request {
    struct auth_lookup *owner;
    char *user;
    struct waiter *waiters;
    struct request *next;     /* in the queue */
    struct lookup_conn *conn; /* running on it; NULL: queued */
    struct event *deadline;
};

/* A lookup connection and what runs on it. */
struct lookup_conn {
    struct auth_lookup *owner;
    struct pgasync db;
    struct request *req;  /* in flight here; NULL: free */
};

struct cached {
    char *user;
    struct auth_lookup_answer answer; /* LOOKUP_FOUND or LOOKUP_MISSING only */
    double at_ms;
};

struct auth_lookup {
    struct event_base *base;
    char *uri;
    char *sql;
    int cache_ms;
    int timeout_ms;
    struct lookup_conn *conns;
    int nconns;
    struct request *head, *tail; /* waiting for a free connection */
    struct cached *cache;
    size_t ncache;
    long lookups, hits, failures, timeouts;
    int dispatching;
};

static void dispatch(struct auth_lookup *l);

struct auth_lookup *auth_lookup_new(struct event_base *base, const char *uri, const char *sql,
                                    const struct auth_lookup_limits *limits)
{
    struct auth_lookup *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->uri = strdup(uri);
    l->sql = strdup(sql);
    l->cache_ms = limits->cache_ms;
    l->timeout_ms = limits->timeout_ms > 0 ? limits->timeout_ms : 5000;
    l->nconns = limits->connections > 0 ? limits->connections : 1;
    l->cache = calloc(CACHE_MAX, sizeof *l->cache);
    l->conns = calloc((size_t)l->nconns, sizeof *l->conns);
    if (!l->uri || !l->sql || !l->cache || !l->conns) {
        auth_lookup_free(l);
        return NULL;
    }
    for (int i = 0; i < l->nconns; i++) {
        struct lookup_conn *c = &l->conns[i];
        c->owner = l;
        pgasync_init(&c->db, base);
        /* the lookup's own deadline bounds it, connecting included; the
         * connection's watchdog would only say the same later */
        pgasync_configure(&c->db, "auth_query", 0, NULL);
    }
    l->base = base;
    return l;
}

static void forget(struct cached *c)
{
    free(c->user);
    OPENSSL_cleanse(c, sizeof *c);
}

static void request_free(struct request *r)
{
    for (struct waiter *w = r->waiters, *next; w; w = next) {
        next = w->next;
        free(w);
    }
    if (r->deadline)
        event_free(r->deadline);
    free(r->user);
    free(r);
}

void auth_lookup_free(struct auth_lookup *l)
{
    if (!l)
        return;
    for (int i = 0; l->conns && i < l->nconns; i++) {
        struct lookup_conn *c = &l->conns[i];
        pgasync_close(&c->db);
        if (c->req)
            request_free(c->req);
    }
    free(l->conns);
    for (struct request *r = l->head, *next; r; r = next) {
        next = r->next;
        request_free(r);
    }
    for (size_t i = 0; l->cache && i < l->ncache; i++)
        forget(&l->cache[i]);
    free(l->cache);
    free(l->uri);
    free(l->sql);
    free(l);
}

static struct cached *cache_find(struct auth_lookup *l, const char *user)
{
    double now = clock_now_ms();
    for (size_t i = 0; i < l->ncache; i++) {
        struct cached *c = &l->cache[i];
        if (strcmp(c->user, user) != 0)
            continue;
        if (now - c->at_ms <= l->cache_ms)
            return c;
        forget(c); /* stale: the role may have changed its password */
        l->cache[i] = l->cache[--l->ncache];
        return NULL;
    }
    return NULL;
}

void auth_lookup_forget(struct auth_lookup *l, const char *user)
{
    for (size_t i = 0; l && i < l->ncache; i++) {
        if (strcmp(l->cache[i].user, user) != 0)
            continue;
        forget(&l->cache[i]);
        l->cache[i] = l->cache[--l->ncache];
        return;
    }
}

static void cache_put(struct auth_lookup *l, const char *user, const struct auth_lookup_answer *a)
{
    if (l->cache_ms <= 0)
        return;
    struct cached *c = cache_find(l, user);
    if (!c && l->ncache == CACHE_MAX) { /* the oldest goes */
        size_t oldest = 0;
        for (size_t i = 1; i < l->ncache; i++)
            if (l->cache[i].at_ms < l->cache[oldest].at_ms)
                oldest = i;
        forget(&l->cache[oldest]);
        l->cache[oldest] = l->cache[--l->ncache];
    }
    if (!c) {
        char *name = strdup(user);
        if (!name)
            return;
        c = &l->cache[l->ncache++];
        c->user = name;
    }
    c->answer = *a;
    c->at_ms = clock_now_ms();
}

/* The answer for every login waiting on the user's lookup. */
static void answer(struct auth_lookup *l, struct request *r, const struct auth_lookup_answer *a)
{
    if (a->outcome == LOOKUP_FAILED) {
        l->failures++;
        log_warn("auth_query: could not look up user \"%s\": %s", r->user, a->why);
    } else {
        cache_put(l, r->user, a);
    }
    for (struct waiter *w = r->waiters; w; w = w->next)
        if (w->ctx)
            w->fn(w->ctx, a);
    request_free(r);
}

/* The connection's lookup ended: its logins hear how, and the connection
 * takes the next user in the queue. */
static void finish(struct lookup_conn *c, const struct auth_lookup_answer *a)
{
    struct request *r = c->req;
    c->req = NULL;
    if (!r)
        return;
    answer(c->owner, r, a);
    dispatch(c->owner);
}

static void failed(struct lookup_conn *c, const char *fmt, const char *detail)
{
    struct auth_lookup_answer a = {.outcome = LOOKUP_FAILED};
    snprintf(a.why, sizeof a.why, fmt, detail ? detail : "?");
    finish(c, &a);
}

static void unqueue(struct auth_lookup *l, struct request *r)
{
    struct request *prev = NULL;
    for (struct request **pp = &l->head; *pp; prev = *pp, pp = &(*pp)->next) {
        if (*pp != r)
            continue;
        *pp = r->next;
        if (l->tail == r)
            l->tail = prev;
        r->next = NULL;
        return;
    }
}

/* The lookup's bound passed. Running, its connection may be stuck on a
 * lock, a slow plan or a dead path: it is dropped (the next lookup opens
 * another). Queued, every connection was taken by such lookups. */
static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct request *r = arg;
    struct auth_lookup *l = r->owner;
    struct auth_lookup_answer a = {.outcome = LOOKUP_FAILED};
    l->timeouts++;
    if (r->conn) {
        struct lookup_conn *c = r->conn;
        pgasync_close(&c->db);
        snprintf(a.why, sizeof a.why,
                 "the role lookup timed out after %d s (auth_query_timeout_s); its connection was dropped",
                 l->timeout_ms / 1000);
        finish(c, &a);
        return;
    }
    unqueue(l, r);
    snprintf(a.why, sizeof a.why,
             "the role lookup timed out after %d s (auth_query_timeout_s) waiting for one of the %d lookup "
             "connections (auth_query_connections), all taken by slower lookups",
             l->timeout_ms / 1000, l->nconns);
    answer(l, r, &a);
}

static void on_answer(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)sqlstate;
    struct lookup_conn *c = ctx;
    if (error) {
        failed(c, "the lookup failed: %s", error);
        return;
    }
    struct auth_lookup_answer a = {.outcome = LOOKUP_MISSING};
    if (PQnfields(res) < 2) {
        failed(c, "%s", "the auth query must return two columns: the user name and its verifier");
        return;
    }
    if (PQntuples(res) > 1) {
        failed(c, "%s", "the auth query returned more than one row");
        return;
    }
    if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 1)) {
        const char *text = PQgetvalue(res, 0, 1);
        if (scram_verifier_parse(&a.verifier, text, strlen(text)) == SCRAM_OK)
            a.outcome = LOOKUP_FOUND;
        else /* an md5 or plain password: SCRAM cannot check it, as Postgres's SCRAM would not */
            log_warn("auth_query: user \"%s\" has no SCRAM-SHA-256 password; it cannot log in through the proxy "
                     "until it gets one (SET password_encryption = 'scram-sha-256'; ALTER ROLE ... PASSWORD ...)",
                     c->req ? c->req->user : "?");
    }
    finish(c, &a);
}

static void send_lookup(struct lookup_conn *c)
{
    c->owner->lookups++;
    const char *values[1] = {c->req->user};
    if (pgasync_send(&c->db, c->owner->sql, 1, values, on_answer, c) != 0)
        failed(c, "the lookup could not be sent: %s", c->db.error);
}

static void on_connected(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    (void)sqlstate;
    struct lookup_conn *c = ctx;
    if (error) {
        failed(c, "cannot connect for the auth query: %s", error);
        return;
    }
    if (c->req)
        send_lookup(c);
}

/* Starts the lookup on a free connection, connecting first when needed. */
static void start(struct lookup_conn *c, struct request *r)
{
    struct auth_lookup *l = c->owner;
    c->req = r;
    r->conn = c;
    if (pgasync_ready(&c->db)) {
        send_lookup(c);
        return;
    }
    pgasync_close(&c->db);
    if (pgasync_connect(&c->db, l->uri, on_connected, c) != 0)
        failed(c, "cannot connect for the auth query: %s", c->db.error);
}

static int live(const struct request *r)
{
    for (const struct waiter *w = r->waiters; w; w = w->next)
        if (w->ctx)
            return 1;
    return 0;
}

/* Queued users go to free connections, first come first served; those
 * whose logins all went away are dropped unasked. A lookup that ends at
 * once (its connection could not even start) frees its connection again:
 * the scan starts over rather than recursing through finish(). */
static void dispatch(struct auth_lookup *l)
{
    if (l->dispatching)
        return; /* the scan under way sees the queue as it is now */
    l->dispatching = 1;
    for (int i = 0; l->head && i < l->nconns; i++) {
        struct lookup_conn *c = &l->conns[i];
        if (c->req)
            continue;
        struct request *r = l->head;
        l->head = r->next;
        if (!l->head)
            l->tail = NULL;
        r->next = NULL;
        if (!live(r)) {
            request_free(r);
            i = -1;
            continue;
        }
        start(c, r);
        if (!c->req)
            i = -1;
    }
    l->dispatching = 0;
}

/* The request for user already queued or in flight, to wait on with it. */
static struct request *pending(struct auth_lookup *l, const char *user)
{
    for (int i = 0; i < l->nconns; i++)
        if (l->conns[i].req && !strcmp(l->conns[i].req->user, user))
            return l->conns[i].req;
    for (struct request *r = l->head; r; r = r->next)
        if (!strcmp(r->user, user))
            return r;
    return NULL;
}

int auth_lookup_user(struct auth_lookup *l, const char *user, auth_lookup_fn fn, void *ctx,
                     struct auth_lookup_answer *answer)
{
    struct cached *c = cache_find(l, user);
    if (c) {
        l->hits++;
        *answer = c->answer;
        return 1;
    }
    struct waiter *w = calloc(1, sizeof *w);
    if (!w)
        return -1;
    w->fn = fn;
    w->ctx = ctx;
    struct request *r = pending(l, user);
    if (r) {
        w->next = r->waiters;
        r->waiters = w;
        return 0;
    }
    r = calloc(1, sizeof *r);
    struct timeval tv = {l->timeout_ms / 1000, (l->timeout_ms % 1000) * 1000};
    if (!r || !(r->user = strdup(user)) || !(r->deadline = evtimer_new(l->base, on_deadline, r)) ||
        evtimer_add(r->deadline, &tv) != 0) { /* unbounded, it could stall its logins forever */
        if (r)
            request_free(r);
        free(w);
        return -1;
    }
    r->owner = l;
    r->waiters = w;
    if (l->tail)
        l->tail->next = r;
    else
        l->head = r;
    l->tail = r;
    dispatch(l);
    return 0;
}

static void cancel_in(struct request *r, void *ctx)
{
    for (struct waiter *w = r ? r->waiters : NULL; w; w = w->next)
        if (w->ctx == ctx)
            w->ctx = NULL;
}

void auth_lookup_cancel(struct auth_lookup *l, void *ctx)
{
    if (!l)
        return;
    for (int i = 0; i < l->nconns; i++)
        cancel_in(l->conns[i].req, ctx);
    for (struct request *r = l->head; r; r = r->next)
        cancel_in(r, ctx);
}

json_t *auth_lookup_status_json(const struct auth_lookup *l)
{
    int connected = 0, in_flight = 0, queued = 0;
    for (int i = 0; i < l->nconns; i++) {
        connected += pgasync_ready(&l->conns[i].db);
        in_flight += l->conns[i].req != NULL;
    }
    for (const struct request *r = l->head; r; r = r->next)
        queued++;
    return json_pack("{s:I,s:I,s:I,s:I,s:I,s:b,s:i,s:i,s:i}", "lookups", (json_int_t)l->lookups, "cache_hits",
                     (json_int_t)l->hits, "failures", (json_int_t)l->failures, "timeouts", (json_int_t)l->timeouts,
                     "cached", (json_int_t)l->ncache, "connected", connected > 0, "connections", connected,
                     "in_flight", in_flight, "queued", queued);
}

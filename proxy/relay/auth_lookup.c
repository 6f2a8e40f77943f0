/* Roles from the database (see auth_lookup.h): one connection, one lookup
 * in flight, a FIFO of waiting logins, and a small cache of answers. */
#include "auth_lookup.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "pgasync.h"

#define CACHE_MAX 4096 /* entries; past it the oldest answer goes */

struct waiter {
    char *user;
    auth_lookup_fn fn;
    void *ctx;              /* NULL once cancelled */
    struct waiter *next;
};

struct cached {
    char *user;
    struct auth_lookup_answer answer; /* LOOKUP_FOUND or LOOKUP_MISSING only */
    double at_ms;
};

struct auth_lookup {
    struct pgasync db;
    char *uri;
    char *sql;
    int cache_ms;
    struct waiter *head, *tail;  /* head: the lookup in flight, when busy */
    int busy;
    struct cached *cache;
    size_t ncache;
    long lookups, hits, failures;
};

static void next_lookup(struct auth_lookup *l);

struct auth_lookup *auth_lookup_new(struct event_base *base, const char *uri, const char *sql, int cache_ms)
{
    struct auth_lookup *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->uri = strdup(uri);
    l->sql = strdup(sql);
    l->cache_ms = cache_ms;
    l->cache = calloc(CACHE_MAX, sizeof *l->cache);
    if (!l->uri || !l->sql || !l->cache) {
        auth_lookup_free(l);
        return NULL;
    }
    pgasync_init(&l->db, base);
    pgasync_configure(&l->db, "auth_query", 5000, NULL);
    return l;
}

static void forget(struct cached *c)
{
    free(c->user);
    OPENSSL_cleanse(c, sizeof *c);
}

void auth_lookup_free(struct auth_lookup *l)
{
    if (!l)
        return;
    pgasync_close(&l->db);
    for (struct waiter *w = l->head, *next; w; w = next) {
        next = w->next;
        free(w->user);
        free(w);
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

/* The answer for the head waiter (the lookup that ran), and for every
 * queued waiter of the same user (a burst of one service's logins costs one
 * lookup). */
static void finish(struct auth_lookup *l, const struct auth_lookup_answer *a)
{
    struct waiter *head = l->head;
    l->busy = 0;
    if (!head)
        return;
    l->head = head->next;
    if (a->outcome == LOOKUP_FAILED) {
        l->failures++;
        log_warn("auth_query: could not look up user \"%s\": %s", head->user, a->why);
    } else {
        cache_put(l, head->user, a);
    }
    if (head->ctx)
        head->fn(head->ctx, a);
    l->tail = NULL;
    for (struct waiter **pp = &l->head; *pp;) {
        struct waiter *w = *pp;
        if (strcmp(w->user, head->user) != 0) {
            l->tail = w;
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        if (w->ctx)
            w->fn(w->ctx, a);
        free(w->user);
        free(w);
    }
    free(head->user);
    free(head);
    next_lookup(l);
}

static void failed(struct auth_lookup *l, const char *fmt, const char *detail)
{
    struct auth_lookup_answer a = {.outcome = LOOKUP_FAILED};
    snprintf(a.why, sizeof a.why, fmt, detail ? detail : "?");
    finish(l, &a);
}

static void on_answer(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)sqlstate;
    struct auth_lookup *l = ctx;
    if (error) {
        failed(l, "the lookup failed: %s", error);
        return;
    }
    struct auth_lookup_answer a = {.outcome = LOOKUP_MISSING};
    if (PQnfields(res) < 2) {
        failed(l, "%s", "the auth query must return two columns: the user name and its verifier");
        return;
    }
    if (PQntuples(res) > 1) {
        failed(l, "%s", "the auth query returned more than one row");
        return;
    }
    if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 1)) {
        const char *text = PQgetvalue(res, 0, 1);
        if (scram_verifier_parse(&a.verifier, text, strlen(text)) == SCRAM_OK)
            a.outcome = LOOKUP_FOUND;
        else /* an md5 or plain password: SCRAM cannot check it, as Postgres's SCRAM would not */
            log_warn("auth_query: user \"%s\" has no SCRAM-SHA-256 password; it cannot log in through the proxy "
                     "until it gets one (SET password_encryption = 'scram-sha-256'; ALTER ROLE ... PASSWORD ...)",
                     l->head->user);
    }
    finish(l, &a);
}

static void on_connected(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    (void)sqlstate;
    struct auth_lookup *l = ctx;
    if (error) {
        l->busy = 1;
        failed(l, "cannot connect for the auth query: %s", error);
        return;
    }
    l->busy = 0;
    next_lookup(l);
}

/* Sends the head waiter's lookup, connecting first when needed. */
static void next_lookup(struct auth_lookup *l)
{
    if (l->busy) /* the head's lookup is in flight: it stays the head */
        return;
    while (l->head && !l->head->ctx) { /* cancelled waiters are skipped */
        struct waiter *w = l->head;
        l->head = w->next;
        if (!l->head)
            l->tail = NULL;
        free(w->user);
        free(w);
    }
    if (!l->head)
        return;
    l->busy = 1;
    if (!pgasync_ready(&l->db)) {
        pgasync_close(&l->db);
        if (pgasync_connect(&l->db, l->uri, on_connected, l) != 0)
            failed(l, "cannot connect for the auth query: %s", l->db.error);
        return;
    }
    l->lookups++;
    const char *values[1] = {l->head->user};
    if (pgasync_send(&l->db, l->sql, 1, values, on_answer, l) != 0)
        failed(l, "the lookup could not be sent: %s", l->db.error);
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
    if (!w || !(w->user = strdup(user))) {
        free(w);
        return -1;
    }
    w->fn = fn;
    w->ctx = ctx;
    if (l->tail)
        l->tail->next = w;
    else
        l->head = w;
    l->tail = w;
    next_lookup(l);
    return 0;
}

void auth_lookup_cancel(struct auth_lookup *l, void *ctx)
{
    for (struct waiter *w = l ? l->head : NULL; w; w = w->next)
        if (w->ctx == ctx)
            w->ctx = NULL;
}

json_t *auth_lookup_status_json(const struct auth_lookup *l)
{
    return json_pack("{s:I,s:I,s:I,s:I,s:b}", "lookups", (json_int_t)l->lookups, "cache_hits", (json_int_t)l->hits,
                     "failures", (json_int_t)l->failures, "cached", (json_int_t)l->ncache, "connected",
                     pgasync_ready(&l->db));
}

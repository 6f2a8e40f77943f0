/* Roles from the database (--auth-query), in the manner of PgBouncer's
 * auth_query: the SCRAM verifier of a user the users file does not hold
 * is asked of Postgres through a function the database owner created
 * (SECURITY DEFINER, reading pg_authid), over the proxy's own connection
 * with its own role. Answers are cached for a while, so a burst of logins
 * costs one round trip per user, and a role created in a console (Neon) or
 * by the app's own migrations can log in without a file to edit.
 *
 * A missing role, a role without a SCRAM password and a wrong password end
 * the same way (the mock exchange of auth.c): the lookup runs for all of
 * them, so their timing does not tell them apart. A lookup that cannot be
 * answered (the connection down, the function missing, no answer within
 * its bound) says why, and the login is refused with it. */
#ifndef PGTANDEM_AUTH_LOOKUP_H
#define PGTANDEM_AUTH_LOOKUP_H

#include <stdint.h>

#include "compiler.h"
#include "scram.h"

struct event_base;
struct auth_lookup;

enum auth_lookup_outcome {
    LOOKUP_FOUND,    /* *verifier is the role's */
    LOOKUP_MISSING,  /* no such role, or no SCRAM verifier: the mock exchange */
    LOOKUP_FAILED    /* not answered: why says so */
};

struct auth_lookup_answer {
    enum auth_lookup_outcome outcome;
    struct scram_verifier verifier;
    char why[256];
};

typedef void (*auth_lookup_fn)(void *ctx, const struct auth_lookup_answer *answer);

struct auth_lookup_limits {
    int cache_ms;    /* an answer is reused this long (0: never) */
    int timeout_ms;  /* a lookup not answered within it, connecting included, fails its logins */
    int connections; /* lookups in flight at once, each on its own connection */
};

/* `sql` takes the user name as $1 and returns (name, verifier) rows, like
 * PgBouncer's auth_query; `uri` is the connection it runs on. NULL when out
 * of memory. Connections open as lookups need them; distinct users are
 * looked up at once, up to limits->connections, the rest wait in order. */
struct auth_lookup *auth_lookup_new(struct event_base *base, const char *uri, const char *sql,
                                    const struct auth_lookup_limits *limits);
void auth_lookup_free(struct auth_lookup *l);

/* From the cache: 1 with *answer filled. Otherwise queues the lookup and
 * returns 0: fn(ctx, answer) is called once, from the event loop, unless
 * auth_lookup_cancel(l, ctx) comes first. -1 out of memory. */
PGT_MUSTCHECK int auth_lookup_user(struct auth_lookup *l, const char *user, auth_lookup_fn fn, void *ctx,
                                   struct auth_lookup_answer *answer);
/* The cached answer for `user` is wrong (the role's password changed since
 * it was read): the next login asks again. */
void auth_lookup_forget(struct auth_lookup *l, const char *user);
/* The waiter `ctx` is gone (its session closed): it is not called. */
void auth_lookup_cancel(struct auth_lookup *l, void *ctx);

/* {"lookups", "cache_hits", "failures", "timeouts", "cached", "connected",
 * "connections", "in_flight", "queued"} for /status. */
struct json_t;
struct json_t *auth_lookup_status_json(const struct auth_lookup *l);

#endif

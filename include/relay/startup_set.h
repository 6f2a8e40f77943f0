/* The startup parameters sessions log in with, each distinct set kept once
 * and shared by reference by every session that sent the same (most clients
 * of an app send the same few), with what is derived from them: the release
 * the client declared, the options a transaction pool is keyed by, and the
 * tracked parameter values and credentials its sessions start from. An idle
 * client holds references, not copies, as PgBouncer's interned strings do. */
#ifndef PGTANDEM_STARTUP_SET_H
#define PGTANDEM_STARTUP_SET_H

#include <stdint.h>

#include "auth.h"
#include "pool.h"
#include "proto.h"
#include "relay.h"

/* Tracked parameter values (pool.h), shared until a session changes one:
 * it then gets a copy of its own (shared_params_own). */
struct shared_params {
    uint32_t refs;
    struct param_values v;
};

/* What a client proved (auth.h), shared by the clients who proved the same. */
struct shared_creds {
    uint32_t refs;
    struct auth_credentials c;
};

struct startup_set {
    struct startup_set *next;     /* same bucket of relay->startup_sets */
    uint64_t hash;
    uint32_t refs;
    uint32_t len;                 /* of packet */
    struct startup_packet sp;     /* its parameters point into packet */
    char *database_version;       /* a database "appdb@NAME" asked for: NAME (NULL: none) */
    char *version;                /* the release it declares (startup_declared_version); NULL: the old shape */
    char *pool_options;           /* transaction pooling: the pool's key besides database and user */
    struct pool *pool;            /* the pool its sessions last ran in (session_current_pool); NULL: none yet */
    struct shared_params *params; /* what its last session in a pool started from */
    struct shared_creds *creds;   /* what its last client proved */
    uint8_t packet[];             /* the StartupMessage, without the "@NAME" of its database */
};

/* The set for a parsed StartupMessage (`packet` of `len` bytes, `sp` read
 * from it; `database_version` as proto_startup_split_param made it, taken
 * over): the one already there for the same bytes, or a new one. One more
 * reference either way; NULL when out of memory (database_version freed). */
struct startup_set *startup_set_get(struct relay *relay, const uint8_t *packet, uint32_t len,
                                    const struct startup_packet *sp, char *database_version);
void startup_set_put(struct relay *relay, struct startup_set *ss);

/* The release a client declared with -c pgtandem.version=NAME in its
 * startup options, or application_name "...@NAME"; NULL if none (a set
 * also reads a database "...@NAME", after the options). Allocated. */
char *startup_declared_version(const struct startup_packet *sp);
/* The client's options string as Postgres gets it through the proxy:
 * without pgtandem.version (its -c with it), which the proxy answers with
 * the search_path. Until the session is routed it writes what it sees, the
 * tables themselves, and the triggers must take it for what it is, not for
 * the new release by its setting (whose `down` would write over what it
 * wrote). Allocated; NULL out of memory. */
char *startup_options_upstream(const char *opts);

/* The tracked values a session of `ss` starts from in a pool whose login
 * reported `welcome`: those, with the set's own values of them. Shared with
 * the set's last session when the same. NULL when out of memory. */
struct shared_params *startup_set_params(struct startup_set *ss, const struct param_values *welcome);
/* Makes *pp the caller's alone (a copy when shared) before it changes it.
 * 0, or -1 out of memory (*pp unchanged). */
int shared_params_own(struct shared_params **pp);
void shared_params_put(struct shared_params *p);

/* The credentials a client of `ss` proved, taken over from `c` (wiped):
 * shared with the set's last client when the same. NULL out of memory. */
struct shared_creds *startup_set_creds(struct startup_set *ss, struct auth_credentials *c);
void shared_creds_put(struct shared_creds *c);

#endif

/* The routes of the migrations in flight (struct version_route in relay.h):
 * the table kept oldest first, its two sources (this proxy's engine, the
 * fleet's looks at the migrations table) and each declared version's path
 * of schemas, worked out once per change rather than per session. */
#ifndef PGTANDEM_VERSION_ROUTE_H
#define PGTANDEM_VERSION_ROUTE_H

#include <stdint.h>

#include "migration_names.h"

/* The migrations in flight this proxy routes, oldest first: the one its
 * engine runs (by_runner) and the ones the fleet's looks at the
 * migrations table find in flight beside it. A session that declares
 * entry k's name (pgtandem.version) sees the new shape of k and of every
 * entry below it, newest first, then the old shape of those above it,
 * oldest first; one that declares none of them sees every old shape. Its
 * search_path starts with that path (paths[k + 1]; paths[0] for the
 * others), the schemas unquoted and comma-separated (a migration's name
 * has no comma). version "" entries do not exist; n == 0 when no migration
 * routes. gen changes with every change: a session whose search_path was
 * set under an older gen is routed again at its next transaction
 * boundary. */
#define RELAY_ROUTES_MAX 8
#define RELAY_ROUTE_PATH_MAX (RELAY_ROUTES_MAX * 64)

struct version_route_entry {
    char version[MIG_NAME_MAX + 1];   /* the migration's whole name */
    char new_schema[64];  /* what its new release sees ("": the same as the old one) */
    char old_schema[64];  /* what every release before it sees */
    int by_runner;        /* pushed by this proxy's engine, not by the fleet's looks */
};

struct version_route {
    struct version_route_entry e[RELAY_ROUTES_MAX];
    int n;
    char paths[RELAY_ROUTES_MAX + 1][RELAY_ROUTE_PATH_MAX];
    uint32_t gen;
};

/* One migration in flight as the fleet found it: the schemas its new
 * release and the releases before it see ("" new: the same as old). */
struct flight_route {
    const char *version, *new_schema, *old_schema;
};

/* The engine's own migration: its entry replaced (in place when the fleet
 * listed it already, first otherwise), or removed (version NULL). Returns
 * 1 when the table changed. */
int version_route_set_runner(struct version_route *r, const char *version, const char *new_schema,
                             const char *old_schema);
/* Every other migration in flight, oldest first, as one look found them:
 * the table becomes that list, the engine's entry kept where the list has
 * its name (first when it does not). Names that do not fit are left out
 * (not routed rather than routed wrongly). Returns 1 when it changed. */
int version_route_set_flight(struct version_route *r, const struct flight_route *list, int n);
/* One migration the fleet heard of between looks (a notification): its
 * entry replaced, or added as the newest; removed when old_schema is NULL
 * (it left flight). The engine's entry is the engine's. Returns 1 when it
 * changed. */
int version_route_set_one(struct version_route *r, const struct flight_route *one);
/* The index of version among the entries, -1 when none. */
int version_route_index(const struct version_route *r, const char *version);
/* Whether a pool of search_path `path` (NULL: no route) serves some
 * session now: one of the paths, or NULL when nothing routes. */
int version_route_has_path(const struct version_route *r, const char *path);
/* Whether a session declaring `declared` sees the new shape of entry k
 * (it declares k or one above it). */
int version_route_sees_new(const struct version_route *r, const char *declared, int k);

#endif

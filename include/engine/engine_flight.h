/* The migrations in flight as the state table records them, read for
 * the rules between them (migration_flight.h): which a start, a complete
 * or a rollback may go ahead with, and which one a command that names
 * none means. Blocking libpq, for the engine. */
#ifndef PGTANDEM_ENGINE_FLIGHT_H
#define PGTANDEM_ENGINE_FLIGHT_H

#include <stdatomic.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "migration_flight.h"

struct engine_flight {
    struct mig_flight *m;   /* oldest first; its strings are owned here */
    size_t n;
};

/* Reads every migration in progress (migration_lifecycle.h's set) with
 * the tables each changes, from its recorded file. 0, or -1 with err. */
int engine_flight_load(PGconn *conn, struct engine_flight *f, char *err, size_t errlen);
void engine_flight_free(struct engine_flight *f);
/* The one named, or NULL. */
const struct mig_flight *engine_flight_find(const struct engine_flight *f, const char *name);
/* "a1 (active), b2 (backfilling)" into out, for messages. */
const char *engine_flight_list(const struct engine_flight *f, char *out, size_t cap);

/* The admission of a migration beside the ones in flight. Each returns 0
 * when it may go ahead, 1 when it is refused (err says why and what to
 * do; nothing was changed), -1 when the database could not be read. */

/* start of m beside f (read under the engine lock): on tables none of
 * them touches (a migration built on another's shape of the same table is
 * not run yet), within migration_flight.h's rules; alone (a proxy's
 * engine runs one migration of its own, and routes the others in flight
 * from the migrations table) when `alone`; with proxies serving the
 * database it is admitted as without (they route every migration in
 * flight: engine_flight_wait_routed). */
int engine_flight_admit_start(const struct engine_flight *f, const struct migration *m, int alone,
                              char *err, size_t errlen);
/* Once m's plan is built, before any DDL: the tables its statements name
 * (another table's foreign key carried to a retyped column) too. */
int engine_flight_admit_plan(const struct engine_flight *f, const struct migration *m, const struct mig_plan *plan,
                             char *err, size_t errlen);
/* complete or rollback of the migration in flight `name` beside the others
 * (complete oldest first on a table; no rollback under a migration built on
 * it, in flight or completed already). */
int engine_flight_admit(PGconn *conn, enum mig_request q, const char *name, char *err, size_t errlen);

/* A --db start with proxies serving the database, before its expand's DDL:
 * waits until every live proxy says in its heartbeat that it routes
 * `name` (MIG_STATE_UNROUTED_SQL), up to ROUTED_WAIT_MS, then names the
 * ones that did not and returns; at once without proxies, or once *stop
 * is set (engine_options.stop). */
void engine_flight_wait_routed(PGconn *conn, const char *name, const atomic_int *stop);

#endif

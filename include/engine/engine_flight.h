/* The migrations in flight as the state table records them, read for
 * the rules between them (migration_flight.h): which a start, a complete
 * or a rollback may go ahead with, and which one a command that names
 * none means. Blocking libpq, for the engine. */
#ifndef PGTANDEM_ENGINE_FLIGHT_H
#define PGTANDEM_ENGINE_FLIGHT_H

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

#endif

/* What the fleet (fleet.h) calls back: its callers' functions for the
 * migration followed and for the coordinator's hold. A header of their
 * own so that the fleet's parts (fleet_internal.h) keep them without
 * including the public header, which fleet.c includes beside theirs. */
#ifndef PGTANDEM_FLEET_HOOKS_H
#define PGTANDEM_FLEET_HOOKS_H

#include <stdint.h>

/* The most recent migration and its status, whenever they may have changed. */
typedef void (*fleet_migration_fn)(void *ctx, const char *name, const char *status);
/* A heartbeat's look at the migrations table answered (after the
 * fleet_migration_fn it caused): look, the relay's number for it
 * (relay_version_look_started), and the most recent migration's name. */
typedef void (*fleet_looked_fn)(void *ctx, uint64_t look, const char *name);

/* ok: every other live proxy has drained and holds its traffic; else why
 * not (the proxies that did not acknowledge, or the connection lost). */
typedef void (*fleet_held_fn)(void *ctx, int ok, const char *why);
/* The hold's row is written and the other proxies are being told: the
 * coordinator's own relay holds from here, in step with theirs. */
typedef void (*fleet_announced_fn)(void *ctx);

#endif

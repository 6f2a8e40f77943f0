/* What the fleet (fleet.h) calls back: its callers' functions for the
 * migration followed and for the coordinator's hold. A header of their
 * own so that the fleet's parts (fleet_internal.h) keep them without
 * including the public header, which fleet.c includes beside theirs. */
#ifndef PGTANDEM_FLEET_HOOKS_H
#define PGTANDEM_FLEET_HOOKS_H

#include <stdint.h>

/* The migration followed (MIG_STATE_FOLLOWED_SQL) and its status as a look
 * found them, or one a notification names (any migration whose status
 * changed), whenever they may have changed. asked_ms (clock_now_ms): when
 * the look was sent, or when the notification came; a look sent before a
 * caller's own write can answer after it, with what the row said before. */
typedef void (*fleet_migration_fn)(void *ctx, const char *name, const char *status, double asked_ms);
/* A heartbeat's look at the migrations table answered (after the
 * fleet_migration_fn it caused): look, the relay's number for it
 * (relay_version_look_started), the followed migration's name, and every
 * migration in flight, oldest first ([{name, status}] as JSON text). */
typedef void (*fleet_looked_fn)(void *ctx, uint64_t look, const char *name, const char *in_flight);

/* ok: every other live proxy has drained and holds its traffic; else why
 * not (the proxies that did not acknowledge, or the connection lost). */
typedef void (*fleet_held_fn)(void *ctx, int ok, const char *why);
/* The hold's row is written and the other proxies are being told: the
 * coordinator's own relay holds from here, in step with theirs. */
typedef void (*fleet_announced_fn)(void *ctx);

#endif

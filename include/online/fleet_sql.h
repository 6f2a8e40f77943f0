/* The fleet's SQL text (fleet_sql.c), private to the fleet's files
 * (fleet_internal.h lists them): what each statement binds is said where
 * it is defined. */
#ifndef PGTANDEM_FLEET_SQL_H
#define PGTANDEM_FLEET_SQL_H

#include "migration_state.h"

/* LISTENed to: "<migration> <status>" on the first, "hold ..." and
 * "release ..." on the second ("ack ..." from proxies of earlier builds is
 * still heard). */
#define FLEET_CHANNEL_MIGRATIONS MIG_STATE_CHANNEL
#define FLEET_CHANNEL_FLEET "pgtandem_fleet"

/* Appended to the schema's SQL when the connection opens. */
extern const char FLEET_SETUP_SQL_TAIL[];
extern const char FLEET_REGISTER_SQL[];
extern const char FLEET_LEASE_SQL[];
extern const char FLEET_HEARTBEAT_SQL[];
extern const char FLEET_HOLD_SQL[];
extern const char FLEET_HOLD_NOTIFY_SQL[];
extern const char FLEET_HOLD_LOOK_SQL[];
extern const char FLEET_NEWS_SQL[];
extern const char FLEET_LEAVE_SQL[];
extern const char FLEET_ACK_CHECK_SQL[];
extern const char FLEET_ACK_SQL[];
extern const char FLEET_RELEASE_SQL[];
/* printf formats (their numbers from the hold), run in the contract's
 * transaction: fleet_commit_check_sql, fleet_held_wait_sql. */
extern const char FLEET_COMMIT_CHECK_SQL[];
extern const char FLEET_HELD_WAIT_SQL[];
/* printf format: epoch, then a SQL literal of the peer acknowledgements. */
extern const char FLEET_PEER_ACKS_SQL[];
/* Declared in fleet.h for the callers outside the fleet; here too, since
 * fleet_sql.c cannot include fleet.h (fleet.c includes this header). */
extern const char FLEET_BYPASSING_SQL[];

#endif

/* The engine's state SQL (see include/migration_state.h). */
#include "migration_state.h"

#include <stdio.h>
#include <stdlib.h>

#include "engine.h"

const char MIG_STATE_LOAD_SQL[] =
    "SELECT plan, status, migration, throttle::text, error FROM pgtandem.migrations WHERE name = $1";

const char MIG_STATE_LATEST_SQL[] =
    "SELECT name, status FROM pgtandem.migrations ORDER BY started_at DESC LIMIT 1";

const char MIG_STATE_SAVE_THROTTLE_SQL[] =
    "UPDATE pgtandem.migrations SET throttle = $2::jsonb, updated_at = now() WHERE name = $1";

const char MIG_STATE_TRY_LOCK_SQL[] = "SELECT pg_try_advisory_lock(" ENGINE_LOCK_KEY ")";

const char MIG_STATE_UNLOCK_SQL[] = "SELECT pg_advisory_unlock_all()";

/* client_connection_check_interval (Postgres 14+) lets a backend notice,
 * while it waits for a lock, that the proxy that sent the statement died. */
const char MIG_STATE_SESSION_SQL[] =
    "SET client_connection_check_interval = '1s'; SET application_name = 'pgtandem engine'";

char *mig_state_completed_sql(const char *name_literal, int attempts, double lock_wait_ms)
{
    static const char fmt[] =
        "UPDATE pgtandem.migrations SET status = 'completed', completed_at = now(), updated_at = now(),"
        " error = NULL, contract_attempts = %d, contract_lock_wait_ms = %.1f WHERE name = %s";
    int n = snprintf(NULL, 0, fmt, attempts, lock_wait_ms, name_literal);
    char *sql = n > 0 ? malloc((size_t)n + 1) : NULL;
    if (sql)
        snprintf(sql, (size_t)n + 1, fmt, attempts, lock_wait_ms, name_literal);
    return sql;
}

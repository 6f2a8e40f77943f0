/* When one of the engine's statements gives up waiting for a lock, an
 * autovacuum worker on the migrated tables is the usual holder: the backfill
 * leaves dead tuples behind, autovacuum arrives, and its SHARE UPDATE
 * EXCLUSIVE lock conflicts with ADD CONSTRAINT, VALIDATE and the contract.
 * Postgres itself cancels an autovacuum that blocks a lock request, but only
 * after deadlock_timeout (1 s by default), longer than the engine's short
 * lock_timeout lets it wait, so the retries could all run into the same
 * worker. This does what Postgres would do, at once: it cancels the
 * autovacuum workers of the database (never one preventing wraparound); the
 * table is vacuumed again later. */
#ifndef PGTANDEM_AUTOVACUUM_YIELD_H
#define PGTANDEM_AUTOVACUUM_YIELD_H

#include <libpq-fe.h>
#include <stddef.h>

struct autovacuum_yield {
    int cancelled;          /* workers cancelled */
    int refused;            /* workers the role may not cancel (not a superuser nor pg_signal_backend) */
    long deadlock_timeout_ms;
    char tables[256];       /* the tables they were vacuuming, for the log */
};

/* Runs outside a transaction (after a ROLLBACK). Returns 0, or -1 when the
 * catalog could not be read (y says nothing then). */
int autovacuum_yield(PGconn *conn, struct autovacuum_yield *y);

#endif

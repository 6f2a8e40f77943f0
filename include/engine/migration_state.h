/* The SQL of the migration's state of record, schema pgtandem in the target
 * database (tables migrations and backfill_progress), for the engine inside
 * the proxy. The statements take parameters ($1 is always the migration's
 * name) so the event loop can send them with PQsendQueryParams. */
#ifndef PGTANDEM_MIGRATION_STATE_H
#define PGTANDEM_MIGRATION_STATE_H

#include <libpq-fe.h>

#include "migration_lifecycle.h"

/* Session advisory lock key held by whichever engine works on a database
 * (one engine per database, whether the CLI or a proxy hosts it). A string
 * so it can be pasted into SQL. */
#define ENGINE_LOCK_KEY "7020637716434665572"
/* The backfill's workers past the first run on connections without the
 * engine lock: each holds its migration's workers lock shared while it
 * lives, and an engine takes it exclusive (letting go at once) before its
 * first batch. So a new engine of that migration starts only once every
 * worker of an engine before it (a process killed while its backends
 * finish their batch) is gone: two batches of one key range never overlap,
 * as with one connection. One lock per migration, (BACKFILL_WORKERS_CLASS,
 * mig_lock_key): the backfills of migrations of other tables, which run at
 * once, do not wait for each other's workers. Written into out: gone 1,
 * the engine's wait; 0, a worker's hold. */
#define BACKFILL_WORKERS_CLASS "1885693283"
void mig_backfill_workers_sql(const char *migration, int gone, char *out, size_t outlen);
/* A migration's own lock: a session advisory lock on (MIGRATION_LOCK_CLASS,
 * mig_lock_key). The engine that backfills a migration directly (--db)
 * holds it and lets go of the engine lock meanwhile, so a migration of
 * other tables starts, expands and backfills beside it instead of being
 * refused for hours; whoever would work on that migration (resume,
 * complete, rollback, a proxy taking the backfill over) finds it held.
 * key: the SQL of its key, a parameter. */
#define MIGRATION_LOCK_CLASS "1885693282"
#define MIGRATION_LOCK_ARGS(key) "(" MIGRATION_LOCK_CLASS ", " key ")"
/* The second half of a migration's advisory lock keys (the first is the
 * lock's class above): a hash of its name, the same in every process and
 * version, as text for a statement's parameter (out: 12 bytes or more). */
void mig_lock_key(const char *migration, char *out, size_t outlen);
/* How an engine that finds the lock taken says so (the runner recognises it
 * in a child's output). */
#define ENGINE_LOCK_HELD_MSG "another pgtandem engine is working on this database"

/* The columns of a backfill checkpoint table (pgtandem.backfill_progress,
 * and the estimate's scratch copy of it); migration_ref follows the
 * migration column (its foreign key, or ""). One row per key range of a
 * table: range_no counts them from 0, range_lo and range_hi bound the
 * range's leading key column as (lo, hi] in text (NULL: unbounded); a
 * table in one range, as every table was before ranges, has one row with
 * range_no 0 and no bounds. */
#define MIG_BACKFILL_PROGRESS_COLUMNS(migration_ref) \
    "migration text NOT NULL" migration_ref ","                                                       \
    "  schema_name text NOT NULL, table_name text NOT NULL, last_key text[],"                         \
    "  rows_done bigint NOT NULL DEFAULT 0, rows_updated bigint NOT NULL DEFAULT 0,"                  \
    "  batches bigint NOT NULL DEFAULT 0, est_rows float8, done boolean NOT NULL DEFAULT false,"      \
    "  paused boolean NOT NULL DEFAULT false, updated_at timestamptz NOT NULL DEFAULT now(),"         \
    "  range_no int NOT NULL DEFAULT 0, range_lo text, range_hi text,"                                \
    "  PRIMARY KEY (migration, schema_name, table_name, range_no)"

/* The statements that create (or upgrade) schema pgtandem: the migrations
 * and their backfill progress, the fleet's proxies and holds. Safe to run
 * from several processes at once: they take a transaction-level advisory
 * lock first. Caller frees; NULL when out of memory. */
char *mig_state_schema_sql(void);
/* 1 when schema pgtandem's state table exists (a database never migrated
 * has none; reading it would fail). */
int mig_state_exists(PGconn *conn);

/* When the proxy of row `alias` of pgtandem.proxies last renewed its lease:
 * its row in pgtandem.fleet_leases, which only that proxy writes, so that a
 * lock an operator holds on pgtandem.proxies delays no renewal (a proxy of
 * a release before that table has no row there: its heartbeat_at counts). */
#define MIG_PROXY_RENEWED_AT(alias)                                                                         \
    "coalesce((SELECT l.renewed_at FROM pgtandem.fleet_leases l WHERE l.id = " alias ".id), " alias          \
    ".heartbeat_at)"

/* -> one row: a JSON array of the proxies whose lease is current ({id,
 * listen, admin, sessions, heartbeat_age_ms}), newest first;
 * an empty array when there is no fleet table. For the CLI. */
extern const char MIG_STATE_FLEET_SQL[];
/* The same where no proxy has made pgtandem.fleet_leases yet (42P01 from
 * the one above): only releases before it are registered. */
extern const char MIG_STATE_FLEET_BEFORE_LEASES_SQL[];
/* $1 a migration's name -> one row: the ids of the live proxies whose
 * last heartbeat did not list it among the migrations they route
 * (", "-separated; "" when every one does). */
extern const char MIG_STATE_UNROUTED_SQL[];

/* Every change of a migration's status is announced on channel
 * pgtandem_migrations ("name status"), so every proxy of the fleet follows
 * it at once: at its commit, where the statement that changes the status is
 * a CTE named `cte` returning name and status, followed by
 * MIG_STATE_NOTIFY_FROM; or, for a fleet's cutover, once its hold is
 * released (MIG_STATE_NOTIFY_OF, fleet_sql.c). (A notification, not a
 * trigger: schema pgtandem holds tables only.) */
#define MIG_STATE_CHANNEL "pgtandem_migrations"
#define MIG_STATE_NOTIFY_OF(name, status) "pg_notify('" MIG_STATE_CHANNEL "', " name " || ' ' || " status ")"
#define MIG_STATE_NOTIFY_FROM(cte) " SELECT " MIG_STATE_NOTIFY_OF("name", "status") " FROM " cte

/* $1 name -> plan, status, migration, throttle (jsonb, may be NULL), error,
 * the rows its backfill has done (all tables), whether steps after its
 * contract are left to run ('t'/'f'), and how long ago (ms) the row last
 * changed */
extern const char MIG_STATE_LOAD_SQL[];
/* The migration a proxy's engine follows: the oldest in flight (the next
 * to complete: completes go oldest first, through the proxies, whose
 * cutover holds their traffic), else the most recent (any status). The
 * others in flight beside it are routed from the fleet's looks
 * (FLEET_HEARTBEAT_SQL). -> name, status. A macro: the heartbeat's text
 * holds it too; `inflight` is the parameter that binds the statuses in
 * progress (mig_status_array_literal). */
#define MIG_STATE_FOLLOWED_SQL(inflight)                                                                         \
    "SELECT name, status FROM pgtandem.migrations ORDER BY status = ANY(" inflight "::text[]) DESC,"            \
    " CASE WHEN status = ANY(" inflight "::text[]) THEN started_at END, started_at DESC LIMIT 1"
/* $1: the statuses in progress (mig_status_array_literal) -> name, status
 * of the migration followed (MIG_STATE_FOLLOWED_SQL), and the names of the
 * 64 most recent that are not in flight as a JSON array (those in flight
 * are known once routed) */
extern const char MIG_STATE_LATEST_SQL[];
/* $1 name, $2 throttle settings (JSON) */
extern const char MIG_STATE_SAVE_THROTTLE_SQL[];
/* $1 name -> throttle (text, may be NULL): what another proxy saved */
extern const char MIG_STATE_READ_THROTTLE_SQL[];
/* $1 name -> status, how long ago (ms) the row last changed */
extern const char MIG_STATE_AGE_SQL[];
/* $1 name -> whether its backfill's pause switch is on (the checkpoint rows') */
extern const char MIG_STATE_PAUSED_SQL[];
/* The one-engine-per-database advisory lock, and letting go of it.
 * TRY_LOCK takes $1 (the migration's mig_lock_key, NULL for none): t only when that
 * migration's own lock is free too (it is not kept); otherwise the engine
 * lock is given back and the answer is f. */
extern const char MIG_STATE_TRY_LOCK_SQL[];
/* -> whether some session holds the engine lock (read without taking it). */
extern const char MIG_STATE_ENGINE_LOCK_HELD_SQL[];
extern const char MIG_STATE_UNLOCK_SQL[];
/* Applied to the engine connection once it is open: a statement that
 * outlives its client is ended (see cutover.h). */
extern const char MIG_STATE_SESSION_SQL[];

/* The state update that commits with the contract (no trailing ';'), for
 * the CLI's contract and the proxy's cutover alike. merges: a merged
 * migration's (migration.h), each of whose migrations is then recorded as
 * completed too; NULL when it merged nothing. notify: the news goes out
 * with the commit (MIG_STATE_NOTIFY_FROM); 0 for a fleet's cutover, whose
 * coordinator tells it once the fleet's hold is released (a NOTIFY in the
 * commit woke every proxy's fleet backend while everyone waited for it).
 * Caller frees; NULL when out of memory. */
char *mig_state_completed_sql(PGconn *conn, const char *name, const char *merges, int attempts,
                              double lock_wait_ms, size_t post_steps, int notify);
/* The steps after a contract (the plan's post list: DROP INDEX
 * CONCURRENTLY, an index's rename) are counted in the state row as they
 * commit: post_done says how many ran, NULL when none is left. A step lost
 * with its connection or its proxy runs again from there (engine.h:
 * engine_finish_post). This is the update that records `done` of `total`
 * run. Caller frees; NULL when out of memory. */
char *mig_state_post_done_sql(PGconn *conn, const char *name, size_t done, size_t total);
/* The same for a status change of the cutover's that contracts nothing:
 * switched (complete kept the old shape) or active again (revert). */
char *mig_state_status_sql(PGconn *conn, const char *name, enum mig_status status, int notify);

#endif

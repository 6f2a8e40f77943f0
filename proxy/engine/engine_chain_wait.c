/* The waits of a migration built on others in flight on one of its
 * tables (--db; declared in engine.h): its backfill after theirs, its
 * index after their backfills. */
#include "engine.h"

#include <stdio.h>
#include <string.h>

#include "engine_checks.h"
#include "engine_flight.h"
#include "log.h"
#include "migration_state.h"

#define BELOW_POLL_MS 500

/* Whether a migration in this phase has a backfill that has not ended. */
static int backfill_running(enum mig_phase p)
{
    return p == MIG_PH_EXPANDING || p == MIG_PH_BACKFILLING || p == MIG_PH_FINISHING;
}

/* The migration in flight below `name` on one of its tables whose
 * backfill has not ended (1: its name and that table in other and table),
 * 0 when none, -1 on error. */
static int backfill_below(PGconn *conn, const char *name, char *other, size_t olen, char *table, size_t tlen,
                          char *err, size_t errlen)
{
    struct engine_flight f;
    if (engine_flight_load(conn, &f, err, errlen) != 0)
        return -1;
    const struct mig_flight *me = engine_flight_find(&f, name);
    int found = 0;
    for (size_t i = 0; me && i < f.n && !found; i++) {
        const struct mig_flight *o = &f.m[i];
        const char *t = o == me ? NULL : mig_flight_shared_table(me, o);
        if (t && backfill_running(o->phase) &&
            mig_flight_below(f.m, f.n, o, me)) {
            snprintf(other, olen, "%s", o->name);
            snprintf(table, tlen, "%s", t);
            found = 1;
        }
    }
    engine_flight_free(&f);
    return found;
}

/* A migration built on another in flight on one of its tables backfills
 * once that one's backfill has ended: its `up` may read the columns the
 * other fills, and a backfill's writes skip every migration's triggers,
 * so a row the other fills after this one walked it would keep a value
 * computed from the column before. Waited for with the engine lock let
 * go (the other's end takes it); a backfill below that failed and that no
 * engine runs again is said at once, and so is one this engine would wait
 * for holding the lock. */
int engine_wait_for_backfills_below(struct engine *e, const char *name, char *err, size_t errlen)
{
    char other[128], table[160];
    for (long waited = 0;; waited += BELOW_POLL_MS) {
        int below = backfill_below(e->conn, name, other, sizeof other, table, sizeof table, err, errlen);
        if (below <= 0)
            return below < 0 ? ENGINE_FAILED : ENGINE_OK;
        const char *v[1] = {other};
        PGresult *r = engine_exec_params(e->conn, "SELECT error FROM pgtandem.migrations WHERE name = $1", 1, v,
                                         err, errlen);
        if (!r)
            return ENGINE_FAILED;
        /* an error of its last run, unless an engine runs it again now */
        int failed = PQntuples(r) == 1 && !PQgetisnull(r, 0, 0);
        if (failed) {
            char why[256];
            int holder = engine_migration_lock_holder(e->conn, other, why, sizeof why);
            failed = holder == 0;
        }
        if (failed || (e->locked && !e->let_go))
            snprintf(err, errlen, "the backfill of %s waits for the backfill of %s, which it builds on (%s), and %s%.600s;"
                     " run `pgtandem migrate resume %s` once %s is active", name, other, table,
                     failed ? "that one failed: " : "this engine holds the engine lock that one needs to end",
                     failed ? PQgetvalue(r, 0, 0) : "", name, other);
        PQclear(r);
        if (failed || (e->locked && !e->let_go))
            return ENGINE_FAILED;
        if (waited % 30000 == 0)
            log_info("backfill of %s: waiting for the backfill of %s to end first (%s builds on its shape of %s);"
                     " if nothing runs it: pgtandem migrate resume %s", name, other, name, table, other);
        if (engine_nap(e, BELOW_POLL_MS) != 0)
            return snprintf(err, errlen, "stopped while the backfill of %s waited for the backfill of %s; run"
                            " `pgtandem migrate resume %s`", name, other, name), ENGINE_FAILED;
    }
}

/* The migration in flight at or below m's parent whose backfill of a
 * table m indexes (create_index) has not ended (1: its name and that
 * table), 0 when none, -1 on error. */
static int indexed_table_backfilling(PGconn *conn, const struct migration *m, char *other, size_t olen,
                                     char *table, size_t tlen, char *err, size_t errlen)
{
    struct engine_flight f;
    if (engine_flight_load(conn, &f, err, errlen) != 0)
        return -1;
    const struct mig_flight *parent = engine_flight_find(&f, m->parent);
    int found = 0;
    for (size_t i = 0; parent && i < f.n && !found; i++) {
        const struct mig_flight *o = &f.m[i];
        if ((o != parent && !mig_flight_below(f.m, f.n, o, parent)) ||
            !backfill_running(o->phase))
            continue;
        for (size_t k = 0; k < m->nops && !found; k++) {
            char q[160];
            snprintf(q, sizeof q, "%s.%s", m->ops[k].schema, m->ops[k].table ? m->ops[k].table : "");
            for (size_t j = 0; m->ops[k].kind == MIG_CREATE_INDEX && j < o->ntables && !found; j++)
                if (!strcmp(o->tables[j], q)) {
                    snprintf(other, olen, "%s", o->name);
                    snprintf(table, tlen, "%s", q);
                    found = 1;
                }
        }
    }
    engine_flight_free(&f);
    return found;
}

/* A migration that indexes a table a migration below it is still
 * backfilling expands once that backfill has ended: built first, the
 * index would be written for every row the backfill updates, and those
 * updates could not be HOT (measured on 1M rows: the chain in flight took
 * 63.8 s against 8.6 s one at a time). The engine lock is let go while it
 * waits (the backfill's end takes it) and taken again after, before the
 * admission reads what is in flight. */
int engine_wait_to_index(struct engine *e, const struct migration *m, char *err, size_t errlen)
{
    char other[128], table[160];
    int unlocked = 0, rc = ENGINE_OK;
    for (long waited = 0;; waited += BELOW_POLL_MS) {
        int busy = indexed_table_backfilling(e->conn, m, other, sizeof other, table, sizeof table, err, errlen);
        if (busy <= 0) {
            rc = busy < 0 ? ENGINE_FAILED : ENGINE_OK;
            break;
        }
        if (!unlocked && !e->lent) {
            PQclear(PQexec(e->conn, MIG_STATE_UNLOCK_SQL));
            unlocked = 1;
        }
        if (waited % 30000 == 0)
            log_info("%s indexes %s, which %s is still backfilling: waiting for that backfill to end before the "
                     "expand", m->name, table, other);
        if (engine_nap(e, BELOW_POLL_MS) != 0) {
            snprintf(err, errlen, "stopped while %s waited for the backfill of %s; nothing of %s changed", m->name,
                     other, m->name);
            rc = ENGINE_FAILED;
            break;
        }
    }
    if (unlocked) {
        e->locked = 0;
        if (engine_retake_lock(e, m->name) != 0)
            return snprintf(err, errlen, "stopped while %s waited for the engine lock; nothing of it changed",
                            m->name), ENGINE_FAILED;
        e->locked = 1;
    }
    return rc;
}

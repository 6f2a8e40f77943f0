/* The migration engine's phases over blocking libpq: state schema and
 * advisory lock, validation against the live catalog, expand, the backfill
 * loop, contract with lock_timeout and bounded retries, rollback. SQL comes
 * from migration_plan / backfill and runs through engine_steps.c; the steps
 * after a contract are engine_post.c's. This file only sequences and
 * records them. */
#include "engine.h"
#include "shape_record.h"

#include <assert.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "migration_lifecycle.h"
#include "migration_state.h"
#include "log.h"
#include "pgasync.h"
#include "migration_catalog.h"
#include "migration_dependents.h"
#include "engine_checks.h"
#include "migration_sql.h"
#include "backfill_drive.h"
#include "retry.h"
#include "step_run.h"
#include "expand_locks.h"
#include "engine_flight.h"
#include "tool_history.h"

/* The migration in progress (migration_lifecycle.h says which statuses
 * are), or the one of a name whatever its status. */
#define CURRENT_COLUMNS "SELECT name, status, checksum, plan, migration FROM pgtandem.migrations"
#define CURRENT_SQL_FMT CURRENT_COLUMNS " WHERE status IN (%s) ORDER BY started_at DESC"
#define NAMED_SQL CURRENT_COLUMNS " WHERE name = $1"

struct current {
    char *name, *status, *checksum, *plan_json, *migration_json;
    enum mig_status st;         /* status, read */
};

__attribute__((format(printf, 3, 4)))
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return ENGINE_FAILED;
}

/* engine_flight's answer as an exit status: a refusal is the command's
 * fault (nothing changed), a failure the database's. */
static int of_flight(int rc)
{
    return rc == 0 ? ENGINE_OK : rc > 0 ? ENGINE_INVALID : ENGINE_FAILED;
}

/* Returns -1 with why set when the row could not be updated. */
static int record_status_why(PGconn *conn, const char *name, enum mig_status status, const char *error, char *why,
                             size_t whylen)
{
    const char *v[5] = {name, mig_status_word(status), error, status == MIG_ST_ACTIVE ? "t" : "f",
                        status == MIG_ST_ROLLED_BACK ? "t" : "f"};
    PGresult *r = engine_exec_params(conn,
        "WITH u AS (UPDATE pgtandem.migrations SET status = $2, error = $3, updated_at = now(),"
        " backfilled_at = CASE WHEN $4::boolean THEN now() ELSE backfilled_at END,"
        " rolled_back_at = CASE WHEN $5::boolean THEN now() ELSE rolled_back_at END"
        " WHERE name = $1 RETURNING name, status)" MIG_STATE_NOTIFY_FROM("u"), 5, v, why, whylen);
    if (!r)
        return -1;
    int found = PQntuples(r) == 1;
    PQclear(r);
    if (!found)
        snprintf(why, whylen, "migration %s is not recorded", name);
    return found ? 0 : -1;
}

static int record_status(PGconn *conn, const char *name, enum mig_status status, const char *error)
{
    char err[256];
    if (record_status_why(conn, name, status, error, err, sizeof err) == 0)
        return 0;
    log_error("recording status %s of %s: %s", mig_status_word(status), name, err);
    return -1;
}

void engine_default_options(struct engine_options *o)
{
    memset(o, 0, sizeof *o);
    o->lock_timeout_ms = 200;
    o->contract_attempts = 10;
    o->backoff_ms = 100;
}

/* The proxy gives up the connection slot it reserved for a migration step
 * just before the step's process connects; Postgres frees it when that
 * backend has exited, a moment later. So "too many clients" (53300, which
 * libpq reports only as text) is waited out briefly rather than fatal. */
#define SLOT_WAIT_MS 3000
#define SLOT_RETRY_MS 50

static int refused_for_slots(PGconn *conn)
{
    const char *m = PQerrorMessage(conn);
    return strstr(m, "too many clients already") || strstr(m, "remaining connection slots are reserved");
}

static PGconn *open_waiting_for_a_slot(const char *uri)
{
    PGconn *conn = pgconn_open(uri, NULL, "pgtandem-migrate", 0); /* TCP timeouts; no statement_timeout: DDL and backfill run long */
    for (int waited = 0; PQstatus(conn) != CONNECTION_OK && refused_for_slots(conn) && waited < SLOT_WAIT_MS;
         waited += SLOT_RETRY_MS) {
        PQfinish(conn);
        struct timespec ts = {0, SLOT_RETRY_MS * 1000000L};
        nanosleep(&ts, NULL);
        conn = pgconn_open(uri, NULL, "pgtandem-migrate", 0);
    }
    return conn;
}

void engine_close(struct engine *e)
{
    if (e->conn && e->locked && !e->lent && PQstatus(e->conn) == CONNECTION_OK)
        PQclear(PQexec(e->conn, MIG_STATE_UNLOCK_SQL));
    e->locked = e->lent = 0;
    if (e->conn)
        PQfinish(e->conn);
    e->conn = NULL;
}

int engine_stopped(const struct engine *e)
{
    return e->opt.stop && atomic_load(e->opt.stop);
}

static int try_engine_lock(struct engine *e)
{
    PGresult *r = PQexec(e->conn, "SELECT pg_try_advisory_lock(" ENGINE_LOCK_KEY ")");
    int got = PQresultStatus(r) == PGRES_TUPLES_OK && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return got;
}

/* Who holds the engine lock: its backend's pid (0: nobody, or it let go
 * between the attempt and this look) and application_name. */
#define ENGINE_LOCK_HOLDER_SQL                                                                                 \
    "SELECT l.pid, coalesce(a.application_name, '') FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid" \
    " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"                                        \
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"                    \
    " AND l.classid = (" ENGINE_LOCK_KEY "::bigint >> 32)::oid"                                              \
    " AND l.objid = (" ENGINE_LOCK_KEY "::bigint & 4294967295)::oid LIMIT 1"

static int engine_lock_holder(PGconn *conn, char *app, size_t applen)
{
    PGresult *r = PQexec(conn, ENGINE_LOCK_HOLDER_SQL);
    int pid = 0;
    app[0] = '\0';
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        pid = atoi(PQgetvalue(r, 0, 0));
        snprintf(app, applen, "%s", PQgetvalue(r, 0, 1));
    }
    PQclear(r);
    return pid;
}

/* Whether this open waits while `app` holds the engine lock: any holder
 * for the proxy's own engine jobs; for `pgtandem migrate` only another
 * `pgtandem migrate`, which holds it for a start's checks and expand, a
 * complete, a rollback or the validations that end a backfill (seconds),
 * never for a backfill; a proxy's engine or any other session may hold it
 * for as long as its migration runs, so that is said at once. */
static int waits_for_holder(const struct engine *e, int pid, const char *app)
{
    return !e->opt.lock_wait_migrate_only || pid == 0 || !strcmp(app, "pgtandem-migrate");
}

/* Takes the engine lock, waiting as the options say (see waits_for_holder);
 * 0, or -1 with err naming the holder. */
static int take_engine_lock(struct engine *e, char *err, size_t errlen)
{
    char app[64] = "";
    int pid = 0;
    for (long waited = 0;; waited += 50) {
        if (try_engine_lock(e))
            return 0;
        pid = engine_lock_holder(e->conn, app, sizeof app);
        if (waited >= e->opt.lock_wait_ms || !waits_for_holder(e, pid, app) || engine_nap(e, 50) != 0)
            break;
        if (e->opt.lock_wait_migrate_only && pid && (waited == 0 || waited % 10000 == 0))
            log_info("waiting for the engine lock: pgtandem migrate (backend pid %d) holds it%s; up to %ld s",
                     pid, waited ? " still" : "", e->opt.lock_wait_ms / 1000);
    }
    char who[160] = "";
    if (pid)
        snprintf(who, sizeof who, " by backend pid %d (application_name '%.60s')", pid, app);
    fail(err, errlen, ENGINE_LOCK_HELD_MSG " (advisory lock %s is held%s%s); wait for it, or find it with: "
         "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = %s", ENGINE_LOCK_KEY, who,
         waits_for_holder(e, pid, app) && e->opt.lock_wait_ms ? ", past the wait for it" : "",
         "(" ENGINE_LOCK_KEY " & 4294967295)");
    return -1;
}

int engine_open(struct engine *e, const char *uri, const struct engine_options *o, enum engine_lock lock,
                char *err, size_t errlen)
{
    assert(e && uri && o && err && errlen > 0);
    memset(e, 0, sizeof *e);
    e->rollback_check = -1;
    e->opt = *o;
    e->uri = uri;
    e->conn = open_waiting_for_a_slot(uri);
    if (PQstatus(e->conn) != CONNECTION_OK)
        return fail(err, errlen, "cannot connect to the database: %s", PQerrorMessage(e->conn));
    engine_exec_simple(e->conn, "SET application_name = 'pgtandem-migrate'; SET client_min_messages = warning",
                NULL, err, errlen);
    if (lock == ENGINE_LOCK_NONE)
        return ENGINE_OK;
    e->lent = lock == ENGINE_LOCK_LENT;
    if (!e->lent && take_engine_lock(e, err, errlen) != 0)
        return ENGINE_FAILED;
    e->locked = 1;
    char *schema = mig_state_schema_sql();
    int rc = schema ? engine_exec_simple(e->conn, schema, NULL, err, errlen) : -1;
    free(schema);
    if (rc != 0)
        return fail(err, errlen, "creating schema pgtandem: %s", schema ? PQerrorMessage(e->conn) : "out of memory");
    return ENGINE_OK;
}


static void free_current(struct current *c)
{
    free(c->name); free(c->status); free(c->checksum); free(c->plan_json); free(c->migration_json);
    memset(c, 0, sizeof *c);
}

/* Returns 1 when a migration is in progress (name NULL), or the one named
 * is recorded (any status), 0 when none, -1 on error, -2 when several are
 * in progress and none is named (err names them). */
static int load_current(PGconn *conn, struct current *c, const char *name, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    if (!mig_state_exists(conn))
        return 0;
    char statuses[MIG_STATUS_SQL_LIST_MAX], sql[sizeof CURRENT_SQL_FMT + MIG_STATUS_SQL_LIST_MAX];
    if (mig_status_sql_list(MIG_SET_IN_PROGRESS, statuses, sizeof statuses) < 0) {
        fail(err, errlen, "the statuses in progress do not fit their buffer");
        return -1;
    }
    snprintf(sql, sizeof sql, CURRENT_SQL_FMT, statuses);
    const char *v[1] = {name};
    PGresult *r = name ? PQexecParams(conn, NAMED_SQL, 1, NULL, v, NULL, NULL, 0) : PQexec(conn, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fail(err, errlen, "reading pgtandem.migrations: %s", PQerrorMessage(conn));
        PQclear(r);
        return -1;
    }
    if (!name && PQntuples(r) > 1) {
        char names[512];
        size_t len = 0;
        names[0] = '\0';
        for (int i = PQntuples(r); i-- > 0 && len < sizeof names;) {
            int w = snprintf(names + len, sizeof names - len, "%s%s (%s)", len ? ", " : "", PQgetvalue(r, i, 0),
                             PQgetvalue(r, i, 1));
            len += w > 0 ? (size_t)w : 0;
        }
        fail(err, errlen, "%d migrations are in flight (%s): name the one (`pgtandem migrate COMMAND NAME`)",
             PQntuples(r), names);
        PQclear(r);
        return -2;
    }
    int found = PQntuples(r) >= 1;
    if (found) {
        c->name = strdup(PQgetvalue(r, 0, 0));
        c->status = strdup(PQgetvalue(r, 0, 1));
        c->st = (enum mig_status)mig_status_of_word(PQgetvalue(r, 0, 1)); /* the table's check: one of them */
        c->checksum = strdup(PQgetvalue(r, 0, 2));
        c->plan_json = PQgetisnull(r, 0, 3) ? NULL : strdup(PQgetvalue(r, 0, 3));
        c->migration_json = strdup(PQgetvalue(r, 0, 4));
    }
    PQclear(r);
    return found;
}

int engine_prepare(struct engine *e, const struct migration *m, struct mig_plan *plan, char *err,
                   size_t errlen)
{
    struct mig_catalog cat;
    /* the rehearsal fills in how each dependent of a retyped column is carried */
    if (mig_catalog_load(e->conn, m, &cat, err, errlen) != 0 ||
        mig_dependents_rehearse(e->conn, m, &cat, err, errlen) != 0) {
        mig_catalog_free(&cat);
        return ENGINE_FAILED;
    }
    if (engine_probe(e->conn, m, &cat, err, errlen) != 0) {
        mig_catalog_free(&cat);
        return ENGINE_INVALID;
    }
    int rc = mig_plan_build(m, &cat, plan, err, errlen) == 0 ? ENGINE_OK : ENGINE_INVALID;
    if (rc == ENGINE_OK && engine_check_live(e->conn, m, &cat, err, errlen) != 0) {
        mig_plan_free(plan);
        rc = ENGINE_INVALID;
    }
    mig_catalog_free(&cat);
    return rc;
}

/* A migration follows the history applied here: its parent is where that
 * history ends (a completed migration nothing completed or in flight is
 * built on), or a migration in flight. Migrations on other tables may
 * complete in any order, so "the last one completed" is not the end; the
 * first one applied through pgtandem adopts whatever history the database
 * has. */
#define HISTORY_SQL_FMT                                                                                        \
    "WITH c AS (SELECT name, parent, status, completed_at FROM pgtandem.migrations),"                       \
    " live AS (SELECT name FROM c WHERE status IN (%s)),"                                                    \
    " heads AS (SELECT h.name, h.completed_at FROM c h WHERE h.status = $2 AND NOT EXISTS"                   \
    "   (SELECT 1 FROM c k WHERE k.parent = h.name AND (k.status = $2 OR k.name IN (SELECT name FROM live))))" \
    " SELECT (SELECT count(*) FROM c WHERE name = $1 AND status = $2),"                                      \
    "        (SELECT string_agg(name, '\", \"' ORDER BY completed_at DESC) FROM heads),"                      \
    "        coalesce($3 IN (SELECT name FROM heads UNION ALL SELECT name FROM live), false),"                 \
    "        (SELECT string_agg(name, '\", \"' ORDER BY name) FROM live),"                                     \
    "        EXISTS (SELECT 1 FROM c WHERE status = $2)"

static int check_history(PGconn *conn, const struct migration *m, char *err, size_t errlen)
{
    char statuses[MIG_STATUS_SQL_LIST_MAX], sql[sizeof HISTORY_SQL_FMT + MIG_STATUS_SQL_LIST_MAX];
    if (mig_status_sql_list(MIG_SET_IN_PROGRESS, statuses, sizeof statuses) < 0)
        return fail(err, errlen, "the statuses in progress do not fit their buffer");
    snprintf(sql, sizeof sql, HISTORY_SQL_FMT, statuses);
    const char *v[3] = {m->name, mig_status_word(MIG_ST_COMPLETED), m->parent};
    PGresult *r = engine_exec_params(conn, sql, 3, v, err, errlen);
    if (!r)
        return ENGINE_FAILED;
    int rc = ENGINE_OK;
    if (atoi(PQgetvalue(r, 0, 0)) > 0)
        rc = fail(err, errlen, "%s: migration \"%s\" has already been completed on this database", m->file,
                  m->name);
    else if (PQgetvalue(r, 0, 4)[0] == 't' && PQgetvalue(r, 0, 2)[0] != 't' && PQgetisnull(r, 0, 3))
        rc = fail(err, errlen, "%s: \"parent\" is \"%s\" but the last migration completed here is \"%s\"; "
                  "migrations are forward-only, re-parent it onto \"%s\"", m->file, m->parent ? m->parent : "null",
                  PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 1));
    else if (PQgetvalue(r, 0, 4)[0] == 't' && PQgetvalue(r, 0, 2)[0] != 't')
        rc = fail(err, errlen, "%s: \"parent\" is \"%s\" but it must be a migration in flight here (\"%s\")%s%s%s; "
                  "migrations are forward-only: re-parent it onto the one it is built on", m->file,
                  m->parent ? m->parent : "null", PQgetvalue(r, 0, 3),
                  PQgetisnull(r, 0, 1) ? "" : " or where the completed ones end (\"", PQgetvalue(r, 0, 1),
                  PQgetisnull(r, 0, 1) ? "" : "\")");
    PQclear(r);
    return rc == ENGINE_OK ? ENGINE_OK : ENGINE_INVALID;
}

/* ---- running steps -------------------------------------------------------- */

/* Each step in its own short transaction: a VALIDATE scans the table and must
 * not keep the lock of a preceding ADD CONSTRAINT while it does. */
static int run_each(struct engine *e, const struct mig_steps *l, char *err, size_t errlen)
{
    return engine_run_list(e, l, STEPS_EACH, NULL, NULL, err, errlen);
}

/* Rollback steps run one by one and keep going: after a partial expand some
 * objects never existed, and every step is written to tolerate that. */
static int run_rollback_steps(struct engine *e, const struct mig_steps *l, char *err, size_t errlen)
{
    return engine_run_list(e, l, STEPS_KEEP_GOING, NULL, NULL, err, errlen);
}

/* ---- checks that precede the cutover -------------------------------------- */

#define CHECK_VIOLATION "23514"

/* The refusal: how many rows violate the check and which one comes first, so
 * the operator can find and fix them. */
static void describe_violations(struct engine *e, const struct mig_check *k, const char *pg_error, char *err,
                                size_t errlen)
{
    PGresult *r = PQexec(e->conn, k->violations);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        long long n = atoll(PQgetvalue(r, 0, 0));
        snprintf(err, errlen, "%s is violated by %lld existing row%s, the first with key %s; fix %s (through "
                 "either shape) and run `pgtandem migrate complete` again. Nothing was changed: the migration "
                 "is still active", k->describe, n, n == 1 ? "" : "s", PQgetvalue(r, 0, 1), n == 1 ? "it" : "them");
    } else {
        snprintf(err, errlen, "%s is violated by existing rows (%s)%s%s; fix them and run `pgtandem migrate "
                 "complete` again. Nothing was changed: the migration is still active", k->describe, pg_error,
                 PQresultStatus(r) == PGRES_TUPLES_OK ? "" : "; counting them failed: ",
                 PQresultStatus(r) == PGRES_TUPLES_OK ? "" : PQresultErrorMessage(r));
    }
    PQclear(r);
}

/* Adds the check NOT VALID (rows written from now on are checked), then
 * validates it. A refusal takes the check away again. */
static int validate_check(struct engine *e, const struct mig_check *k, char *err, size_t errlen)
{
    struct mig_step add = {.sql = k->add, .mode = MIG_STEP_TXN, .op_index = k->op_index};
    struct mig_steps one = {.v = &add, .n = 1, .cap = 1};
    if (run_each(e, &one, err, errlen) != ENGINE_OK)
        return ENGINE_FAILED;
    char tmo[64], state[6] = "", pg_error[1024], ignored[256];
    /* VALIDATE takes SHARE UPDATE EXCLUSIVE: it waits only for other DDL and VACUUM. */
    snprintf(tmo, sizeof tmo, "SET lock_timeout = '%ldms'", e->opt.lock_timeout_ms * 10);
    engine_exec_simple(e->conn, tmo, NULL, ignored, sizeof ignored);
    int rc = engine_exec_simple(e->conn, k->validate, state, pg_error, sizeof pg_error);
    engine_exec_simple(e->conn, "RESET lock_timeout", NULL, ignored, sizeof ignored);
    if (rc == 0)
        return ENGINE_OK;
    if (strcmp(state, CHECK_VIOLATION) == 0)
        describe_violations(e, k, pg_error, err, errlen);
    else
        snprintf(err, errlen, "%s: validating it failed: %s; nothing was changed", k->describe, pg_error);
    struct mig_step drop = {.sql = k->drop, .mode = MIG_STEP_TXN, .op_index = k->op_index};
    one.v = &drop;
    if (run_each(e, &one, ignored, sizeof ignored) != ENGINE_OK)
        log_warn("%s: could not remove the unvalidated check again (rollback or the next complete will): %s",
                 k->describe, ignored);
    return ENGINE_FAILED;
}

static int validate_checks(struct engine *e, const struct mig_plan *plan, char *err, size_t errlen)
{
    for (size_t i = 0; i < plan->nchecks; i++) {
        log_debug("validating %s against every row", plan->checks[i].describe);
        if (validate_check(e, &plan->checks[i], err, errlen) != ENGINE_OK)
            return ENGINE_FAILED;
    }
    return ENGINE_OK;
}

/* ---- backfill -------------------------------------------------------------- */

/* The migration's backfill settings, with the worker count the command
 * line asked for. */
static struct mig_backfill_settings backfill_settings(const struct engine *e, const struct mig_backfill_settings *cfg)
{
    struct mig_backfill_settings c = *cfg;
    if (e->opt.backfill_workers > 0)
        c.workers = e->opt.backfill_workers;
    return c;
}

static int drive_backfill(struct engine *e, const char *name, const struct mig_plan *plan,
                          const struct mig_backfill_settings *cfg, char *err, size_t errlen)
{
    struct backfill_drive d = {.conn = e->conn, .uri = e->uri, .stop = e->opt.stop,
                               .budget = e->opt.stop_after_batches > 0 ? e->opt.stop_after_batches : -1,
                               .pace = e->opt.pace, .on_progress = e->opt.on_progress, .progress_arg = e->opt.progress_arg};
    struct mig_backfill_settings c = backfill_settings(e, cfg);
    switch (backfill_drive_run(&d, name, plan, &c, err, errlen)) {
    case BACKFILL_DONE: return ENGINE_OK;
    case BACKFILL_BUDGET_SPENT: return -2;
    case BACKFILL_FAILED: break;
    }
    return ENGINE_FAILED;
}

/* Another session's hold of the migration's own lock (its pid), 0 when
 * none, -1 when it could not be read. Asked under the engine lock, which
 * its holder had when it took it. */
int engine_migration_lock_holder(PGconn *conn, const char *name, char *err, size_t errlen)
{
    char key[16];
    mig_lock_key(name, key, sizeof key);
    const char *v[1] = {key};
    PGresult *r = engine_exec_params(conn, "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                                     "   AND classid = " MIGRATION_LOCK_CLASS " AND objsubid = 2"
                                     "   AND objid = $1::int::oid AND pid <> pg_backend_pid() LIMIT 1",
                                     1, v, err, errlen);
    int pid = !r ? -1 : PQntuples(r) ? atoi(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    return pid;
}

/* A direct engine (the CLI's) lets go of the engine lock for the hours of
 * a backfill and holds the migration's own lock instead: a migration of
 * other tables starts beside it meanwhile (engine_flight.c says which may),
 * and whoever would work on this one finds it taken (load_in_progress, a
 * proxy's TRY_LOCK). A proxy's engine (alone) or one lent the lock keeps
 * it as it is. */
static void let_engine_lock_go(struct engine *e, const char *name)
{
    if (e->opt.alone || !e->locked || e->lent || e->let_go)
        return;
    char key[16], err[256];
    mig_lock_key(name, key, sizeof key);
    const char *v[1] = {key};
    PGresult *r = engine_exec_params(e->conn, "SELECT CASE WHEN pg_try_advisory_lock" MIGRATION_LOCK_ARGS("$1::int")
                                     " THEN pg_advisory_unlock(" ENGINE_LOCK_KEY ") ELSE false END", 1, v, err,
                                     sizeof err);
    e->let_go = r && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (e->let_go)
        log_info("backfill of %s: the engine lock is free for migrations of other tables meanwhile", name);
}

int engine_retake_lock(struct engine *e, const char *what)
{
    for (long waited = 0; !try_engine_lock(e); waited += 50) {
        if (engine_nap(e, 50) != 0)
            return -1;
        if (waited && waited % 10000 == 0)
            log_info("%s: waiting for the engine lock another engine holds (%ld s)", what, waited / 1000);
    }
    return 0;
}

/* Before the validations and the status that end the backfill: an engine
 * holding it now starts or completes another migration, a matter of
 * seconds. */
static int take_engine_lock_again(struct engine *e, const char *name, char *err, size_t errlen)
{
    if (!e->let_go)
        return ENGINE_OK;
    char what[160];
    snprintf(what, sizeof what, "backfill of %s", name);
    if (engine_retake_lock(e, what) != 0)
        return fail(err, errlen, "stopped while the backfill of %s waited for the engine lock; "
                    "run `pgtandem migrate resume %s`", name, name);
    e->let_go = 0;
    return ENGINE_OK;
}

static int run_backfill(struct engine *e, const char *name, const struct mig_plan *plan,
                        const struct mig_backfill_settings *cfg, char *err, size_t errlen)
{
    let_engine_lock_go(e, name);
    int rc = plan->nbf ? engine_wait_for_backfills_below(e, name, err, errlen) : ENGINE_OK;
    if (rc == ENGINE_OK)
        rc = drive_backfill(e, name, plan, cfg, err, errlen);
    char again[512];
    if (take_engine_lock_again(e, name, again, sizeof again) != ENGINE_OK) {
        if (rc != ENGINE_FAILED)
            snprintf(err, errlen, "%s", again);
        return ENGINE_FAILED;
    }
    return rc;
}

/* Backfill, then the validations that need the data in place. */
static int finish_start(struct engine *e, const char *name, const struct mig_plan *plan,
                        const struct mig_backfill_settings *cfg, char *err, size_t errlen)
{
    if (e->opt.skip_backfill)
        return ENGINE_OK;
    int rc = run_backfill(e, name, plan, cfg, err, errlen);
    if (rc == -2) {
        log_info("backfill of %s stopped after the requested number of batches; "
                 "run `pgtandem migrate resume` to continue", name);
        return ENGINE_OK;
    }
    if (rc != ENGINE_OK) {
        record_status(e->conn, name, MIG_ST_BACKFILLING, err);
        return rc;
    }
    if (run_each(e, &plan->validate, err, errlen) != ENGINE_OK) {
        record_status(e->conn, name, MIG_ST_BACKFILLING, err);
        return ENGINE_FAILED;
    }
    /* the backfill and its checks are done, but the table decides what
     * every proxy and `complete` believe: a status left behind is a failure */
    char why[512];
    if (record_status_why(e->conn, name, MIG_ST_ACTIVE, NULL, why, sizeof why) != 0)
        return fail(err, errlen, "the backfill of %s is done and checked, but recording it active failed: %s; "
                    "run `pgtandem migrate resume`", name, why);
    log_info("migration %s is active: both shapes are live; run `pgtandem migrate complete` "
             "once every client uses the new shape", name);
    return ENGINE_OK;
}

static int expand(struct engine *e, const struct migration *m, const struct mig_plan *plan,
                  char *err, size_t errlen)
{
    if (record_status(e->conn, m->name, MIG_ST_EXPANDING, NULL) != 0)
        return fail(err, errlen, "cannot record the migration state: %s", PQerrorMessage(e->conn));
    if (!e->opt.alone) /* a proxy's own engine routes its start itself, holding its traffic */
        engine_flight_wait_routed(e->conn, m->name, e->opt.stop);
    /* Consecutive transactional steps share one transaction, its tables
     * locked first, children before parents (expand_locks.c); CONCURRENTLY
     * steps run on their own. */
    char *locks = expand_lock_sql(m);
    int rc = engine_run_list_locked(e, &plan->expand, STEPS_SHARED_TXN, NULL, locks, NULL, err, errlen);
    free(locks);
    if (rc != ENGINE_OK) {
        if (engine_stopped(e)) /* stopped for a rollback: it undoes the partial expand */
            return ENGINE_FAILED;
        char e2[1024];
        log_error("expand of %s failed: %s; removing what it created", m->name, err);
        run_rollback_steps(e, &plan->rollback, e2, sizeof e2);
        record_status(e->conn, m->name, MIG_ST_FAILED, err);
        return ENGINE_FAILED;
    }
    record_status(e->conn, m->name, MIG_ST_BACKFILLING, NULL);
    return ENGINE_OK;
}

static int insert_migration(struct engine *e, const struct migration *m, const struct mig_plan *plan,
                            char *err, size_t errlen)
{
    char *plan_json = mig_plan_to_json(plan);
    if (!plan_json)
        return fail(err, errlen, "out of memory");
    const char *v[6] = {m->name, m->parent, m->checksum, m->json, plan_json, mig_status_word(MIG_ST_EXPANDING)};
    PGresult *r = engine_exec_params(e->conn,
        "WITH u AS (INSERT INTO pgtandem.migrations (name, parent, checksum, migration, plan, status)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO UPDATE SET"
        " parent = $2, checksum = $3, migration = $4, plan = $5, status = $6,"
        " started_at = now(), updated_at = now(), error = NULL, backfilled_at = NULL, throttle = NULL,"
        " rolled_back_at = NULL, completed_at = NULL RETURNING name, status)" MIG_STATE_NOTIFY_FROM("u"),
        6, v, err, errlen);
    free(plan_json);
    if (!r)
        return ENGINE_FAILED;
    PQclear(r);
    r = engine_exec_params(e->conn, "DELETE FROM pgtandem.backfill_progress WHERE migration = $1", 1, v, err, errlen);
    PQclear(r);
    if (!r)
        return ENGINE_FAILED;
    /* before the first DDL: what its rollback is checked against */
    return shape_record_save(e->conn, m, err, errlen) == 0 ? ENGINE_OK : ENGINE_FAILED;
}

/* What pgtandem.migrations says of name. Releases before names were kept
 * whole recorded a longer name cut to its first 40 characters; that row is
 * the same migration when its checksum (the file's) matches too. */
json_t *engine_applied_entry(json_t *applied, const char *name)
{
    json_t *a = json_object_get(applied, name);
    char cut[41];
    if (a || strlen(name) <= 40)
        return a;
    memcpy(cut, name, 40);
    cut[40] = '\0';
    return json_object_get(applied, cut);
}

int engine_chain_pending(struct engine *e, const struct migration *list, size_t n, size_t *pending, char *err,
                         size_t errlen)
{
    json_t *applied = NULL;
    int rc = engine_applied(e, &applied, err, errlen);
    size_t first = 0;
    for (; rc == ENGINE_OK && first < n; first++) {
        json_t *a = engine_applied_entry(applied, list[first].name);
        if (mig_status_of_word(json_string_value(json_object_get(a, "status"))) != MIG_ST_COMPLETED)
            break;
        const char *sum = json_string_value(json_object_get(a, "checksum"));
        if (!sum || strcmp(sum, list[first].checksum) != 0) {
            fail(err, errlen, "%s: migration \"%s\" was changed after it was applied (checksum differs); restore"
                 " the file", list[first].file, list[first].name);
            rc = ENGINE_INVALID;
        }
    }
    for (size_t i = first + 1; rc == ENGINE_OK && i < n; i++) {
        json_t *a = engine_applied_entry(applied, list[i].name);
        const char *status = json_string_value(json_object_get(a, "status"));
        if (mig_status_of_word(status) == MIG_ST_COMPLETED) {
            fail(err, errlen, "%s: \"%s\" is applied but its parent \"%s\" is not", list[i].file, list[i].name,
                 list[i].parent ? list[i].parent : "-");
            rc = ENGINE_INVALID;
        }
    }
    json_decref(applied);
    *pending = first;
    return rc;
}

int engine_start_chain(struct engine *e, const struct migration *list, size_t n, char *err, size_t errlen)
{
    assert(e->conn && e->locked && n > 0);
    size_t first = 0;
    int rc = engine_chain_pending(e, list, n, &first, err, errlen);
    if (rc != ENGINE_OK)
        return rc;
    if (first == n) {
        log_info("every migration of the chain is applied (head %s); nothing to do", list[n - 1].name);
        return ENGINE_OK;
    }
    if (first + 1 == n)
        return engine_start(e, &list[first], err, errlen);
    struct migration merged;
    if (mig_merge(list + first, n - first, &merged, err, errlen) != 0)
        return ENGINE_INVALID;
    log_info("%zu pending migrations (%s .. %s) run as one: one expand, one backfill, one cutover", n - first,
             list[first].name, list[n - 1].name);
    rc = engine_start(e, &merged, err, errlen);
    mig_free(&merged);
    return rc;
}

int engine_start(struct engine *e, const struct migration *m, char *err, size_t errlen)
{
    assert(e->conn && e->locked && err && errlen > 0); /* an exclusive engine_open came first */
    struct current cur;
    int found = load_current(e->conn, &cur, m->name, err, errlen);
    if (found < 0)
        return ENGINE_FAILED;
    if (found && mig_status_in_progress(cur.st)) {
        int same = !strcmp(cur.checksum, m->checksum), expanded = cur.st != MIG_ST_EXPANDING;
        free_current(&cur);
        /* a start stopped between its expand and the tool's row writes it now */
        if (same && expanded && tool_history_started(e->conn, e->opt.tool, m->name, err, errlen) != 0)
            return ENGINE_FAILED;
        if (same) {
            e->opt.target = m->name;
            return engine_resume(e, err, errlen);
        }
        return fail(err, errlen, "%s: migration \"%s\" was started from a different file (checksum "
                    "changed); roll it back first or restore the file", m->file, m->name), ENGINE_INVALID;
    }
    free_current(&cur);
    if (!e->opt.alone && engine_wait_to_index(e, m, err, errlen) != ENGINE_OK)
        return ENGINE_FAILED;
    /* read once: the engine lock keeps them as they are until the expand */
    struct engine_flight fl;
    if (engine_flight_load(e->conn, &fl, err, errlen) != 0)
        return ENGINE_FAILED;
    int rc = of_flight(engine_flight_admit_start(&fl, m, e->opt.alone, err, errlen));
    if (rc == ENGINE_OK && (rc = engine_finish_post(e, err, errlen)) != ENGINE_OK) {
        char msg[1200];
        snprintf(msg, sizeof msg, "the steps after the last migration's contract did not finish, so %s was not "
                 "started (nothing of it changed): %.900s", m->name, err);
        snprintf(err, errlen, "%s", msg);
    }
    if (rc == ENGINE_OK)
        rc = check_history(e->conn, m, err, errlen);
    struct mig_plan plan;
    if (rc == ENGINE_OK)
        rc = engine_prepare(e, m, &plan, err, errlen);
    if (rc == ENGINE_OK && (rc = of_flight(engine_flight_admit_plan(&fl, m, &plan, err, errlen))) != ENGINE_OK)
        mig_plan_free(&plan);
    engine_flight_free(&fl);
    if (rc != ENGINE_OK)
        return rc;
    for (size_t i = 0; i < plan.nnotes; i++)
        log_warn("%s", plan.notes[i]);
    rc = insert_migration(e, m, &plan, err, errlen);
    if (rc == ENGINE_OK)
        rc = expand(e, m, &plan, err, errlen);
    /* the tool's own row, before the backfill (tool_history.c says why) */
    if (rc == ENGINE_OK && tool_history_started(e->conn, e->opt.tool, m->name, err, errlen) != 0) {
        char msg[1400];
        snprintf(msg, sizeof msg, "%.1000s; %s is expanded and in flight, but its tool would run it again: roll it "
                 "back (`pgtandem migrate rollback %s`) and start it again", err, m->name, m->name);
        snprintf(err, errlen, "%s", msg);
        rc = ENGINE_FAILED;
    }
    if (rc == ENGINE_OK)
        rc = finish_start(e, m->name, &plan, &m->backfill, err, errlen);
    mig_plan_free(&plan);
    return rc;
}

/* The migration in progress as the state table has it, with the migration
 * and the plan stored with it: what resume, complete and rollback work on. */
struct in_progress {
    struct current cur;
    struct migration m;
    struct mig_plan plan;
};

static void free_in_progress(struct in_progress *ip)
{
    mig_plan_free(&ip->plan);
    mig_free(&ip->m);
    free_current(&ip->cur);
}

/* Loads it (all three or nothing) on an engine holding the engine lock;
 * name: the one of that name instead, whatever its status. */
static int load_in_progress(struct engine *e, struct in_progress *ip, const char *name, char *err, size_t errlen)
{
    assert(e->conn && e->locked && err && errlen > 0); /* an exclusive engine_open came first */
    if (!name)
        name = e->opt.target;
    int found = load_current(e->conn, &ip->cur, name, err, errlen);
    if (found == -2)
        return ENGINE_INVALID;
    if (found <= 0) {
        if (found == 0 && name)
            snprintf(err, errlen, "migration %s is not recorded", name);
        else if (found == 0)
            snprintf(err, errlen, "no migration is in progress");
        return found == 0 ? ENGINE_INVALID : ENGINE_FAILED;
    }
    /* parsed into locals first: a pointer into *ip handed to another file
     * would make the analyzer forget what ip->cur owns */
    const struct current *cur = &ip->cur;
    struct migration m;
    struct mig_plan plan;
    if (mig_parse(cur->migration_json, strlen(cur->migration_json), cur->name, &m, err, errlen) != 0 ||
        !cur->plan_json || mig_plan_from_json(cur->plan_json, &plan, err, errlen) != 0) {
        mig_free(&m);
        free_current(&ip->cur);
        return ENGINE_FAILED;
    }
    ip->m = m;
    ip->plan = plan;
    int holder = engine_migration_lock_holder(e->conn, cur->name, err, errlen);
    if (holder != 0) {
        if (holder > 0)
            snprintf(err, errlen, ENGINE_LOCK_HELD_MSG ": the backfill of %s runs in the engine of backend pid %d "
                     "(a `migrate` with --db); wait for it, pause it (`pgtandem migrate pause %s`) or stop it",
                     cur->name, holder, cur->name);
        free_in_progress(ip);
        return ENGINE_FAILED;
    }
    return ENGINE_OK;
}


int engine_resume(struct engine *e, char *err, size_t errlen)
{
    int rc = engine_finish_post(e, err, errlen); /* the last one's steps left, if any */
    if (rc != ENGINE_OK)
        return rc;
    struct in_progress ip;
    rc = load_in_progress(e, &ip, NULL, err, errlen);
    if (rc != ENGINE_OK)
        return rc;
    const struct current *cur = &ip.cur;
    if (!mig_status_in_progress(cur->st)) {
        log_info("migration %s is %s; nothing to resume", cur->name, cur->status);
        free_in_progress(&ip);
        return ENGINE_OK;
    }
    if (cur->st == MIG_ST_EXPANDING) {
        log_info("migration %s was interrupted during expand; undoing the partial expand and redoing it",
                 cur->name);
        char e2[1024];
        run_rollback_steps(e, &ip.plan.rollback, e2, sizeof e2);
        rc = expand(e, &ip.m, &ip.plan, err, errlen);
    }
    if (rc == ENGINE_OK && cur->st != MIG_ST_ACTIVE)
        rc = finish_start(e, cur->name, &ip.plan, &ip.m.backfill, err, errlen);
    else if (rc == ENGINE_OK)
        log_info("migration %s is already active; run `pgtandem migrate complete`", cur->name);
    free_in_progress(&ip);
    return rc;
}

int engine_retry_batch(struct engine *e, const char *schema, const char *table, int range_no, char *err,
                       size_t errlen)
{
    struct in_progress ip;
    int rc = load_in_progress(e, &ip, NULL, err, errlen);
    if (rc != ENGINE_OK)
        return rc;
    struct mig_backfill_settings c = backfill_settings(e, &ip.m.backfill);
    if (backfill_drive_one(e->conn, ip.cur.name, &ip.plan, &c, schema, table, range_no, err, errlen) != 0)
        rc = ENGINE_FAILED;
    free_in_progress(&ip);
    return rc;
}

int engine_complete(struct engine *e, struct engine_contract_report *rep, char *err, size_t errlen)
{
    assert(rep);
    memset(rep, 0, sizeof *rep);
    struct in_progress ip;
    int rc = load_in_progress(e, &ip, NULL, err, errlen);
    if (rc != ENGINE_OK)
        return rc;
    const struct current *cur = &ip.cur;
    if (cur->st != MIG_ST_ACTIVE && cur->st != MIG_ST_SWITCHED) { /* switched: finalize */
        snprintf(err, errlen, "migration %s is %s, not active; %s", cur->name, cur->status,
                 cur->st != MIG_ST_FAILED ? "let the backfill finish (`pgtandem migrate resume`)" : "roll it back");
        rc = ENGINE_INVALID;
    } else if ((rc = of_flight(engine_flight_admit(e->conn, MIG_REQ_COMPLETE, cur->name, err, errlen))) != ENGINE_OK) {
        /* err says which one goes first */
    } else if (validate_checks(e, &ip.plan, err, errlen) != ENGINE_OK) {
        engine_record_error(e->conn, cur->name, err);
        rc = ENGINE_FAILED;
    } else if (e->opt.validate_only) {
        rc = ENGINE_OK;
    } else {
        /* the same statement the proxy's cutover commits with; the attempts
         * and the lock wait are known only afterwards and recorded below */
        char *completed = mig_state_completed_sql(e->conn, cur->name, ip.m.merges, 0, 0, ip.plan.post.n, 1);
        rc = completed ? engine_run_list(e, &ip.plan.contract, STEPS_SHARED_TXN, completed, rep, err, errlen)
                       : fail(err, errlen, "out of memory");
        free(completed);
        if (rc != ENGINE_OK) {
            char msg[1200];
            snprintf(msg, sizeof msg, "contract failed after %d attempt(s): %s", rep->attempts, err);
            snprintf(err, errlen, "%s", msg);
        }
        char a[16], w[32];
        snprintf(a, sizeof a, "%d", rep->attempts);
        snprintf(w, sizeof w, "%.1f", rep->lock_wait_ms);
        const char *v2[4] = {cur->name, a, w, rc == ENGINE_OK ? NULL : err};
        char e2[256];
        PGresult *r = engine_exec_params(e->conn, "UPDATE pgtandem.migrations SET contract_attempts = $2::int,"
                                  " contract_lock_wait_ms = $3::float8, error = $4 WHERE name = $1",
                                  4, v2, e2, sizeof e2);
        PQclear(r);
        char why[1024];
        if (rc == ENGINE_OK && tool_history_completed(e->conn, cur->name, why, sizeof why) != 0)
            log_error("migration %s is complete, but marking its tool's row finished failed: %s", cur->name, why);
        if (rc == ENGINE_OK && engine_run_post(e, cur->name, &ip.plan.post, 0, &rep->post_gave_up, err, errlen) !=
                                   ENGINE_OK) {
            log_error("migration %s is complete; a step after its contract did not finish and is left for the next "
                      "engine (`pgtandem migrate resume`, the next start, or a proxy): %s", cur->name, err);
            rc = ENGINE_FAILED;
        } else if (rc == ENGINE_OK && rep->post_gave_up) {
            rc = ENGINE_FAILED; /* err says which step; the schema is not the file's */
        }
    }
    free_in_progress(&ip);
    return rc;
}

int engine_rollback(struct engine *e, const char *name, char *err, size_t errlen)
{
    struct in_progress ip;
    int rc = load_in_progress(e, &ip, name, err, errlen);
    if (rc == ENGINE_INVALID && name) { /* stopped before it recorded anything */
        log_info("migration %s changed nothing before its rollback; nothing to undo", name);
        return ENGINE_OK;
    }
    if (rc != ENGINE_OK)
        return rc;
    const struct current *cur = &ip.cur;
    if (cur->st == MIG_ST_ROLLED_BACK || cur->st == MIG_ST_COMPLETED) {
        int completed = cur->st == MIG_ST_COMPLETED;
        if (completed)
            snprintf(err, errlen, "migration %s is completed; write a new migration to undo it", cur->name);
        else
            log_info("migration %s is rolled back already", cur->name);
        free_in_progress(&ip);
        return completed ? ENGINE_INVALID : ENGINE_OK;
    }
    rc = of_flight(engine_flight_admit(e->conn, MIG_REQ_ROLLBACK, cur->name, err, errlen));
    if (rc != ENGINE_OK) {
        free_in_progress(&ip);
        return rc;
    }
    /* failed: its expand undid itself, and undoing again (every step is
     * IF EXISTS) removes whatever that left; the status then says so */
    rc = run_rollback_steps(e, &ip.plan.rollback, err, errlen);
    char why[1024];
    if (rc == ENGINE_OK && tool_history_rolled_back(e->conn, cur->name, why, sizeof why) != 0)
        log_error("migration %s rolled back, but taking its tool's row away failed (the tool counts it applied): %s",
                  cur->name, why);
    if (rc == ENGINE_OK) {
        rc = shape_record_judge(e->conn, &ip.m, &e->rollback_check, e->rollback_diff, sizeof e->rollback_diff, err,
                                errlen) == 0 ? ENGINE_OK : ENGINE_FAILED;
        record_status(e->conn, cur->name, MIG_ST_ROLLED_BACK, rc == ENGINE_OK ? NULL : err);
        const char *v[1] = {cur->name};
        char e2[256];
        PQclear(engine_exec_params(e->conn, "DELETE FROM pgtandem.backfill_progress WHERE migration = $1", 1, v,
                            e2, sizeof e2));
    } else {
        record_status(e->conn, cur->name, cur->st, err);
    }
    free_in_progress(&ip);
    return rc;
}

int engine_set_paused(struct engine *e, int paused, char *err, size_t errlen)
{
    struct current cur;
    int found = load_current(e->conn, &cur, e->opt.target, err, errlen);
    if (found <= 0)
        return found == 0 ? (snprintf(err, errlen, e->opt.target ? "migration %s is not recorded"
                                      : "no migration is in progress", e->opt.target), ENGINE_INVALID)
                          : found == -2 ? ENGINE_INVALID : ENGINE_FAILED;
    const char *v[2] = {cur.name, paused ? "t" : "f"};
    PGresult *r = engine_exec_params(e->conn, "UPDATE pgtandem.backfill_progress SET paused = $2::boolean"
                              " WHERE migration = $1", 2, v, err, errlen);
    PQclear(r);
    free_current(&cur);
    return r ? ENGINE_OK : ENGINE_FAILED;
}

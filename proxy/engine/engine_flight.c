/* The migrations in flight, read from the state table, and the admission
 * of a start, a complete or a rollback beside them (engine_flight.h).
 * The tables each changes come from its own recorded file and plan,
 * parsed again, so the rules see what that migration's operations and
 * statements name, not a copy kept beside it that could drift. */
#include "engine_flight.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "engine_checks.h"
#include "log.h"
#include "migration.h"
#include "migration_state.h"

#define FLIGHT_SQL_FMT \
    "SELECT name, parent, status, migration, plan FROM pgtandem.migrations WHERE status IN (%s)" \
    " ORDER BY started_at, name"

static void free_one(struct mig_flight *m)
{
    free((char *)m->name);
    free((char *)m->parent);
    mig_flight_tables_free((char **)m->tables, m->ntables);
    mig_flight_tables_free((char **)m->named, m->nnamed);
    memset(m, 0, sizeof *m);
}

void engine_flight_free(struct engine_flight *f)
{
    for (size_t i = 0; i < f->n; i++)
        free_one(&f->m[i]);
    free(f->m);
    memset(f, 0, sizeof *f);
}

static int read_row(PGresult *r, int i, struct mig_flight *out, char *err, size_t errlen)
{
    const char *name = PQgetvalue(r, i, 0), *json = PQgetvalue(r, i, 3);
    struct migration m;
    if (mig_parse(json, strlen(json), name, &m, err, errlen) != 0) {
        mig_free(&m);
        return -1;
    }
    /* its plan as stored: the tables its statements name (a foreign key
     * carried to a retyped column) count too */
    struct mig_plan plan;
    int have_plan = !PQgetisnull(r, i, 4) && mig_plan_from_json(PQgetvalue(r, i, 4), &plan, err, errlen) == 0;
    char **tables = NULL;
    size_t nt = 0;
    int rc = mig_flight_tables(&m, have_plan ? &plan : NULL, &tables, &nt);
    if (have_plan)
        mig_plan_free(&plan);
    char **named = NULL;
    size_t nn = 0;
    rc |= mig_flight_tables(&m, NULL, &named, &nn);
    out->named = (const char *const *)named;
    out->nnamed = nn;
    out->adds_only = mig_adds_only(&m);
    mig_free(&m);
    out->name = strdup(name);
    out->parent = PQgetisnull(r, i, 1) ? NULL : strdup(PQgetvalue(r, i, 1));
    out->phase = mig_phase_of_status((enum mig_status)mig_status_of_word(PQgetvalue(r, i, 2)));
    out->tables = (const char *const *)tables;
    out->ntables = nt;
    if (rc != 0 || !out->name || (!PQgetisnull(r, i, 1) && !out->parent)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

int engine_flight_load(PGconn *conn, struct engine_flight *f, char *err, size_t errlen)
{
    memset(f, 0, sizeof *f);
    if (!mig_state_exists(conn))
        return 0;
    char statuses[MIG_STATUS_SQL_LIST_MAX], sql[sizeof FLIGHT_SQL_FMT + MIG_STATUS_SQL_LIST_MAX];
    if (mig_status_sql_list(MIG_SET_IN_PROGRESS, statuses, sizeof statuses) < 0) {
        snprintf(err, errlen, "the statuses in progress do not fit their buffer");
        return -1;
    }
    snprintf(sql, sizeof sql, FLIGHT_SQL_FMT, statuses);
    PGresult *r = PQexec(conn, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "reading pgtandem.migrations: %s", PQerrorMessage(conn));
        PQclear(r);
        return -1;
    }
    int rows = PQntuples(r);
    f->m = rows ? calloc((size_t)rows, sizeof *f->m) : NULL;
    if (rows && !f->m) {
        snprintf(err, errlen, "out of memory");
        PQclear(r);
        return -1;
    }
    for (int i = 0; i < rows; i++) {
        int rc = read_row(r, i, &f->m[f->n], err, errlen);
        f->n++; /* freed with the others, whole or in part */
        if (rc != 0) {
            PQclear(r);
            engine_flight_free(f);
            return -1;
        }
    }
    PQclear(r);
    return 0;
}

const struct mig_flight *engine_flight_find(const struct engine_flight *f, const char *name)
{
    for (size_t i = 0; name && i < f->n; i++)
        if (!strcmp(f->m[i].name, name))
            return &f->m[i];
    return NULL;
}

const char *engine_flight_list(const struct engine_flight *f, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < f->n && len < cap; i++) {
        int w = snprintf(out + len, cap - len, "%s%s (%s)", i ? ", " : "", f->m[i].name,
                         mig_phase_word(f->m[i].phase));
        if (w < 0)
            break;
        len += (size_t)w;
    }
    return out;
}

/* ---- admission ---- */

/* m's tables (with its plan once built) against those in flight: 1 (err
 * set) when one is shared with a migration that does more to it than add
 * (mig_adds_only) while m does more too, -1 when out of memory. One that
 * only adds may be built on, and m may be built on any when it only adds
 * itself (its plan then reads that one's shape): mig_flight_admit then
 * asks that it is m's parent or below it. */
static int admit_tables(const struct engine_flight *f, const struct migration *m, const struct mig_plan *plan,
                        char *err, size_t errlen)
{
    struct mig_flight me = {.name = m->name, .parent = m->parent, .phase = MIG_PH_IDLE,
                            .adds_only = mig_adds_only(m)};
    char **tables = NULL, **named = NULL;
    if (mig_flight_tables(m, plan, &tables, &me.ntables) != 0 || mig_flight_tables(m, NULL, &named, &me.nnamed) != 0) {
        mig_flight_tables_free(tables, me.ntables);
        return snprintf(err, errlen, "out of memory"), -1;
    }
    me.tables = (const char *const *)tables;
    me.named = (const char *const *)named;
    const char *t = NULL;
    int any = 0;
    size_t i = 0;
    while (i < f->n && !(t = mig_flight_unbuildable_table(&me, &f->m[i], 1, &any)))
        i++;
    if (i < f->n)
        snprintf(err, errlen, "%s changes %s, which migration %s in flight changes too%s; a migration is built on"
                 " another in flight on one table only when one of the two adds to it and nothing more (add_column,"
                 " create_index, create_table): complete %s (or roll it back) first, or start the pending files"
                 " together as one (`pgtandem migrate start DIR`)", m->name,
                 any ? "tables no step names (sql, enum labels)" : t, f->m[i].name,
                 any ? " (a step of one of them names no table, so it may touch any)" : "", f->m[i].name);
    mig_flight_tables_free(tables, me.ntables);
    mig_flight_tables_free(named, me.nnamed);
    return i < f->n;
}

int engine_flight_admit_start(const struct engine_flight *f, const struct migration *m, int alone,
                              char *err, size_t errlen)
{
    if (f->n == 0)
        return 0;
    const char *newest = f->m[f->n - 1].name;
    if (alone)
        return snprintf(err, errlen, "migration \"%s\" is in progress; complete or roll it back before starting "
                        "\"%s\"", newest, m->name), 1;
    int rc = admit_tables(f, m, NULL, err, errlen);
    if (rc != 0)
        return rc;
    struct mig_flight me = {.name = m->name, .parent = m->parent, .phase = MIG_PH_IDLE};
    char why[1024], list[512];
    if (mig_flight_admit(f->m, f->n, MIG_REQ_START, &me, 0, why, sizeof why) != 0)
        return snprintf(err, errlen, "%s", why), 1;
    log_info("starting %s beside the migration%s in flight: %s", m->name, f->n > 1 ? "s" : "",
             engine_flight_list(f, list, sizeof list));
    return 0;
}

int engine_flight_admit_plan(const struct engine_flight *f, const struct migration *m, const struct mig_plan *plan,
                             char *err, size_t errlen)
{
    return f->n == 0 ? 0 : admit_tables(f, m, plan, err, errlen);
}

/* A migration on other tables may complete before the one it was built
 * on (its parent, in flight beside it); rolling that parent back then
 * would leave a history applied without one of its steps. */
static int refuse_under_completed(PGconn *conn, const char *name, char *err, size_t errlen)
{
    const char *v[2] = {name, mig_status_word(MIG_ST_COMPLETED)};
    PGresult *r = engine_exec_params(conn, "SELECT string_agg(name, ', ' ORDER BY completed_at) FROM"
                                     " pgtandem.migrations WHERE parent = $1 AND status = $2", 2, v, err, errlen);
    if (!r)
        return -1;
    int refused = !PQgetisnull(r, 0, 0);
    if (refused)
        snprintf(err, errlen, "%s, built on %s, is completed already: rolling %s back would leave it applied "
                 "without its parent; complete %s, then write a new migration to undo what it changed",
                 PQgetvalue(r, 0, 0), name, name, name);
    PQclear(r);
    return refused;
}

int engine_flight_admit(PGconn *conn, enum mig_request q, const char *name, char *err, size_t errlen)
{
    struct engine_flight f;
    if (engine_flight_load(conn, &f, err, errlen) != 0)
        return -1;
    const struct mig_flight *m = engine_flight_find(&f, name);
    char why[1024];
    int rc = 0;
    if (m && f.n > 1 && mig_flight_admit(f.m, f.n, q, m, 0, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s", why);
        rc = 1;
    }
    engine_flight_free(&f);
    if (rc == 0 && q == MIG_REQ_ROLLBACK)
        rc = refuse_under_completed(conn, name, err, errlen);
    return rc;
}

/* ---- the proxies' routes ---- */

/* A --db start with proxies serving the database: before its DDL, every
 * live proxy routes the migration (each heard of its status by a
 * notification or a look, and says so in its next heartbeat), so a
 * release's next transaction sees its own shape the moment the DDL
 * commits: routed after it, an old release's prepared SELECT * met the
 * table's new column first ("cached plan must not change result type",
 * test_flight_proxy.py). A proxy that does not say so within the bound
 * (an older build, a partition) is named, and the expand goes on: its
 * sessions are routed at their next boundary once it hears. */
#define ROUTED_WAIT_MS 10000
#define ROUTED_POLL_MS 20

void engine_flight_wait_routed(PGconn *conn, const char *name, const atomic_int *stop)
{
    const char *v[1] = {name};
    char missing[512] = "";
    for (int waited = 0; waited <= ROUTED_WAIT_MS && !(stop && atomic_load(stop)); waited += ROUTED_POLL_MS) {
        PGresult *r = PQexecParams(conn, MIG_STATE_UNROUTED_SQL, 1, NULL, v, NULL, NULL, 0);
        int ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
        snprintf(missing, sizeof missing, "%s", ok ? PQgetvalue(r, 0, 0) : "");
        PQclear(r);
        if (!ok || !missing[0]) {
            if (waited > 0)
                log_info("every proxy serving this database routes %s (after %d ms)", name, waited);
            return;
        }
        if (waited == 0)
            log_info("waiting for the proxies serving this database to route %s before its expand: %s", name,
                     missing);
        struct timespec ts = {0, ROUTED_POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (missing[0])
        log_warn("proxies %s have not said they route %s within %d ms; expanding: their sessions are routed at their "
                 "next transaction once they hear of it", missing, name, ROUTED_WAIT_MS);
}

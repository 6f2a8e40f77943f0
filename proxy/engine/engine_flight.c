/* The migrations in flight, read from the state table (engine_flight.h).
 * The tables each changes come from its own recorded file, parsed again,
 * so the rules see what that migration's operations name, not a copy
 * kept beside it that could drift. */
#include "engine_flight.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migration.h"

#define FLIGHT_SQL_FMT \
    "SELECT name, parent, status, migration, plan FROM pgtandem.migrations WHERE status IN (%s)" \
    " ORDER BY started_at, name"

static void free_one(struct mig_flight *m)
{
    free((char *)m->name);
    free((char *)m->parent);
    mig_flight_tables_free((char **)m->tables, m->ntables);
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
    PGresult *r = PQexec(conn, "SELECT to_regclass('pgtandem.migrations') IS NOT NULL");
    int has_state = PQresultStatus(r) == PGRES_TUPLES_OK && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (!has_state)
        return 0;
    char statuses[MIG_STATUS_SQL_LIST_MAX], sql[sizeof FLIGHT_SQL_FMT + MIG_STATUS_SQL_LIST_MAX];
    if (mig_status_sql_list(MIG_SET_IN_PROGRESS, statuses, sizeof statuses) < 0) {
        snprintf(err, errlen, "the statuses in progress do not fit their buffer");
        return -1;
    }
    snprintf(sql, sizeof sql, FLIGHT_SQL_FMT, statuses);
    r = PQexec(conn, sql);
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

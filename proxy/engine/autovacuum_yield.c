/* Cancels the autovacuum workers that keep the engine from its lock (see
 * autovacuum_yield.h). */
#include "autovacuum_yield.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *WORKERS_SQL =
    "SELECT a.pid::text, coalesce(p.relid::regclass::text, '?'),"
    "       (SELECT setting FROM pg_settings WHERE name = 'deadlock_timeout')"
    "  FROM pg_stat_activity a LEFT JOIN pg_stat_progress_vacuum p ON p.pid = a.pid"
    " WHERE a.backend_type = 'autovacuum worker' AND a.datname = current_database()"
    "   AND a.query NOT LIKE '%to prevent wraparound%'";

static void add_table(struct autovacuum_yield *y, const char *name)
{
    size_t n = strlen(y->tables);
    snprintf(y->tables + n, sizeof y->tables - n, "%s%s", n ? ", " : "", name);
}

int autovacuum_yield(PGconn *conn, struct autovacuum_yield *y)
{
    memset(y, 0, sizeof *y);
    PGresult *r = PQexec(conn, WORKERS_SQL);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        return -1;
    }
    y->deadlock_timeout_ms = 1000;
    for (int i = 0; i < PQntuples(r); i++) {
        y->deadlock_timeout_ms = atol(PQgetvalue(r, i, 2));
        const char *pid[1] = {PQgetvalue(r, i, 0)};
        /* One call per worker: a refusal (42501, or "must be a superuser"
         * on versions that keep autovacuum to superusers) is an error that
         * would end a query cancelling several. */
        PGresult *c = PQexecParams(conn, "SELECT pg_cancel_backend($1::int)", 1, NULL, pid, NULL, NULL, 0);
        if (PQresultStatus(c) == PGRES_TUPLES_OK && PQgetvalue(c, 0, 0)[0] == 't') {
            y->cancelled++;
            add_table(y, PQgetvalue(r, i, 1));
        } else if (PQresultStatus(c) != PGRES_TUPLES_OK) {
            y->refused++;
        }
        PQclear(c);
    }
    PQclear(r);
    return 0;
}

/* Unit tests for what every pgtandem connection gets: the TCP timeouts
 * merged into the user's URI without overriding what it sets, the session
 * options put before the user's own, and which failures a migration waits
 * out (a full disk, a terminated connection) instead of failing. */
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

#include "pgasync.h"
#include "unit.h"

/* The value libpq will use for keyword, "" when unset. */
static const char *setting(PGconn *conn, const char *keyword, char *buf, size_t n)
{
    PQconninfoOption *opts = PQconninfo(conn);
    buf[0] = '\0';
    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        if (!strcmp(o->keyword, keyword) && o->val)
            snprintf(buf, n, "%s", o->val);
    PQconninfoFree(opts);
    return buf;
}

static void test_defaults_are_added(void)
{
    char v[256];
    /* nothing listens on port 1: the connection is only started */
    PGconn *c = pgconn_open("postgresql://u@127.0.0.1:1/db", NULL, NULL, 1);
    CHECK("defaults: connection object", c != NULL);
    CHECK("defaults: connect_timeout", !strcmp(setting(c, "connect_timeout", v, sizeof v), "5"));
    CHECK("defaults: keepalives", !strcmp(setting(c, "keepalives", v, sizeof v), "1"));
    CHECK("defaults: keepalives_idle", !strcmp(setting(c, "keepalives_idle", v, sizeof v), "5"));
    CHECK("defaults: keepalives_interval", !strcmp(setting(c, "keepalives_interval", v, sizeof v), "2"));
    CHECK("defaults: keepalives_count", !strcmp(setting(c, "keepalives_count", v, sizeof v), "3"));
    CHECK("defaults: tcp_user_timeout", !strcmp(setting(c, "tcp_user_timeout", v, sizeof v), "10000"));
    CHECK("defaults: the URI's own settings stay", !strcmp(setting(c, "dbname", v, sizeof v), "db"));
    PQfinish(c);
}

static void test_user_settings_win(void)
{
    char v[256];
    PGconn *c = pgconn_open("postgresql://u@127.0.0.1:1/db?keepalives_idle=30&connect_timeout=20"
                            "&options=-c%20statement_timeout%3D9000",
                            "-c statement_timeout=4000 -c lock_timeout=2000", NULL, 1);
    CHECK("user: keepalives_idle kept", !strcmp(setting(c, "keepalives_idle", v, sizeof v), "30"));
    CHECK("user: connect_timeout kept", !strcmp(setting(c, "connect_timeout", v, sizeof v), "20"));
    CHECK("user: the other defaults still added", !strcmp(setting(c, "keepalives_count", v, sizeof v), "3"));
    /* Postgres applies -c in order: the user's, last, wins */
    CHECK("user: options merged, the user's last",
          !strcmp(setting(c, "options", v, sizeof v),
                  "-c statement_timeout=4000 -c lock_timeout=2000 -c statement_timeout=9000"));
    PQfinish(c);

    setenv("PGCONNECT_TIMEOUT", "7", 1);
    c = pgconn_open("host=127.0.0.1 port=1 dbname=db user=u", NULL, NULL, 1);
    CHECK("env: PGCONNECT_TIMEOUT is the user's setting", !strcmp(setting(c, "connect_timeout", v, sizeof v), "7"));
    PQfinish(c);
    unsetenv("PGCONNECT_TIMEOUT");
}

static void test_invalid_uri_reports_libpqs_error(void)
{
    PGconn *c = pgconn_open("postgresql://u@127.0.0.1:1/db?nosuchoption=1", NULL, NULL, 0);
    CHECK("invalid: a connection object carrying the error", c && PQstatus(c) == CONNECTION_BAD);
    CHECK("invalid: libpq names the option", c && strstr(PQerrorMessage(c), "nosuchoption"));
    PQfinish(c);
}

static void test_transient_errors(void)
{
    CHECK("disk full is waited out", pg_error_transient("53100"));
    CHECK("disk full: the cause in words", pg_error_cause("53100") && strstr(pg_error_cause("53100"), "disk"));
    CHECK("out of memory is waited out", pg_error_transient("53200"));
    CHECK("too many connections is waited out", pg_error_transient("53300"));
    CHECK("terminated (57P01) is waited out", pg_error_transient("57P01"));
    CHECK("not yet accepting (57P03) is waited out", pg_error_transient("57P03"));
    CHECK("connection failure (08006) is waited out", pg_error_transient("08006"));
    CHECK("a data error is not", !pg_error_transient("22P02"));
    CHECK("a unique violation is not", !pg_error_transient("23505"));
    CHECK("a lock timeout is not (handled by the step)", !pg_error_transient("55P03"));
    CHECK("no SQLSTATE is not", !pg_error_transient(NULL));
}

/* The fleet tells pgtandem's own backends by their name, so it is theirs
 * from the startup packet on, whatever the URI says. */
static void test_application_name_is_ours(void)
{
    char v[256];
    PGconn *c = pgconn_open("postgresql://u@127.0.0.1:1/db?application_name=app", NULL, "pgtandem fleet", 1);
    CHECK("name: ours over the URI's", !strcmp(setting(c, "application_name", v, sizeof v), "pgtandem fleet"));
    PQfinish(c);
    c = pgconn_open("postgresql://u@127.0.0.1:1/db?application_name=app", NULL, NULL, 1);
    CHECK("name: the URI's without one of ours", !strcmp(setting(c, "application_name", v, sizeof v), "app"));
    PQfinish(c);
}

int main(void)
{
    test_defaults_are_added();
    test_application_name_is_ours();
    test_user_settings_win();
    test_invalid_uri_reports_libpqs_error();
    test_transient_errors();
    return UNIT_RESULT();
}

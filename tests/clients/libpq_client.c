/* libpq_client: protocol checks driven through libpq, used by the relay's
 * integration tests (tests/integration/test_relay_libpq.py).
 *
 *   libpq_client pipeline URI      pipeline mode: batches, an error that aborts
 *                                  the rest of its batch, recovery after Sync
 *   libpq_client cancel URI        pg_sleep(60) cancelled -> 57014; prints elapsed
 *   libpq_client cancel_idle URI N  N times: PQcancel on the idle session, then
 *                                  pg_sleep(0.02); prints "cancelled K of N"
 *                                  (PQcancel returns once the server closed the
 *                                  cancel connection: K is 0 against Postgres)
 *   libpq_client notify URI        LISTEN/NOTIFY between two connections
 *   libpq_client notice URI        NoticeResponse reaches the notice receiver
 *   libpq_client backend_pid URI   PQbackendPID is pg_backend_pid(), the session's
 *                                  pg_stat_activity.pid and a notification's PID
 *   libpq_client notify_one_read URI  two NOTIFYs committed together are both
 *                                  there after a single PQconsumeInput
 *   libpq_client largerow URI MB   a row of MB megabytes down, and a parameter
 *                                  of MB megabytes up, checked by MD5
 *
 * Each prints one "ok ..." line per check and exits 0, or prints "FAIL ..."
 * and exits 1.
 */
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("FAIL ", stdout);
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    fflush(stdout);
    exit(1);
}

static void ok(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ok ", stdout);
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    fflush(stdout);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static PGconn *connect_or_die(const char *uri)
{
    PGconn *c = PQconnectdb(uri);
    if (PQstatus(c) != CONNECTION_OK)
        fail("connect: %s", PQerrorMessage(c));
    return c;
}

static void exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fail("%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
}

static const char *sqlstate(const PGresult *r)
{
    const char *s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    return s ? s : "";
}

/* ---- pipeline ---------------------------------------------------------- */

static PGresult *next_result(PGconn *c, const char *what)
{
    PGresult *r = PQgetResult(c);
    if (!r)
        fail("%s: no result (%s)", what, PQerrorMessage(c));
    return r;
}

static void expect_null(PGconn *c, const char *what)
{
    PGresult *r = PQgetResult(c);
    if (r) {
        fail("%s: expected end of query results, got %s", what, PQresStatus(PQresultStatus(r)));
    }
}

static void expect_int(PGconn *c, int want, const char *what)
{
    PGresult *r = next_result(c, what);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail("%s: status %s: %s", what, PQresStatus(PQresultStatus(r)), PQresultErrorMessage(r));
    if (PQntuples(r) != 1 || atoi(PQgetvalue(r, 0, 0)) != want)
        fail("%s: expected %d, got %s", what, want, PQntuples(r) ? PQgetvalue(r, 0, 0) : "no rows");
    PQclear(r);
    expect_null(c, what);
}

static void expect_status(PGconn *c, ExecStatusType want, const char *what)
{
    PGresult *r = next_result(c, what);
    if (PQresultStatus(r) != want)
        fail("%s: expected %s, got %s: %s", what, PQresStatus(want), PQresStatus(PQresultStatus(r)),
             PQresultErrorMessage(r));
    if (want == PGRES_FATAL_ERROR && strcmp(sqlstate(r), "22012") != 0)
        fail("%s: expected SQLSTATE 22012, got %s", what, sqlstate(r));
    PQclear(r);
    if (want != PGRES_PIPELINE_SYNC)
        expect_null(c, what);
}

static int cmd_pipeline(const char *uri)
{
    PGconn *c = connect_or_die(uri);
    exec_ok(c, "DROP TABLE IF EXISTS pgt_pipeline; CREATE TABLE pgt_pipeline (n int)");
    if (!PQenterPipelineMode(c))
        fail("enter pipeline mode: %s", PQerrorMessage(c));

    /* Batch 1: 100 parameterised queries and a prepared statement. */
    char buf[32];
    const char *params[1] = {buf};
    for (int i = 0; i < 100; i++) {
        snprintf(buf, sizeof buf, "%d", i);
        if (!PQsendQueryParams(c, "SELECT $1::int + 1", 1, NULL, params, NULL, NULL, 0))
            fail("send %d: %s", i, PQerrorMessage(c));
    }
    if (!PQsendPrepare(c, "ins", "INSERT INTO pgt_pipeline VALUES ($1::int)", 1, NULL))
        fail("send prepare: %s", PQerrorMessage(c));
    for (int i = 0; i < 10; i++) {
        snprintf(buf, sizeof buf, "%d", i);
        if (!PQsendQueryPrepared(c, "ins", 1, params, NULL, NULL, 0))
            fail("send prepared %d: %s", i, PQerrorMessage(c));
    }
    if (!PQpipelineSync(c))
        fail("sync 1: %s", PQerrorMessage(c));

    /* Batch 2: an error aborts the rest of the batch (nothing committed). */
    PQsendQueryParams(c, "INSERT INTO pgt_pipeline VALUES (1000)", 0, NULL, NULL, NULL, NULL, 0);
    PQsendQueryParams(c, "SELECT 1/0", 0, NULL, NULL, NULL, NULL, 0);
    PQsendQueryParams(c, "INSERT INTO pgt_pipeline VALUES (2000)", 0, NULL, NULL, NULL, NULL, 0);
    if (!PQpipelineSync(c))
        fail("sync 2: %s", PQerrorMessage(c));

    /* Batch 3: works again after the Sync. */
    PQsendQueryParams(c, "SELECT count(*) FROM pgt_pipeline", 0, NULL, NULL, NULL, NULL, 0);
    if (!PQpipelineSync(c))
        fail("sync 3: %s", PQerrorMessage(c));

    for (int i = 0; i < 100; i++) {
        snprintf(buf, sizeof buf, "query %d", i);
        expect_int(c, i + 1, buf);
    }
    expect_status(c, PGRES_COMMAND_OK, "prepare");
    for (int i = 0; i < 10; i++)
        expect_status(c, PGRES_COMMAND_OK, "insert prepared");
    expect_status(c, PGRES_PIPELINE_SYNC, "sync 1");
    ok("pipeline batch of 100 queries + prepared inserts: results in order");

    expect_status(c, PGRES_COMMAND_OK, "insert before error");
    expect_status(c, PGRES_FATAL_ERROR, "division by zero");
    expect_status(c, PGRES_PIPELINE_ABORTED, "aborted after error");
    expect_status(c, PGRES_PIPELINE_SYNC, "sync 2");
    ok("pipeline error 22012 aborted the rest of its batch");

    expect_int(c, 10, "count after aborted batch");
    expect_status(c, PGRES_PIPELINE_SYNC, "sync 3");
    ok("pipeline recovered after sync: 10 rows, aborted batch rolled back");

    if (!PQexitPipelineMode(c))
        fail("exit pipeline mode: %s", PQerrorMessage(c));
    exec_ok(c, "DROP TABLE pgt_pipeline");
    PQfinish(c);
    return 0;
}

/* ---- cancel ------------------------------------------------------------ */

static int cmd_cancel(const char *uri)
{
    PGconn *c = connect_or_die(uri);
    if (!PQsendQuery(c, "SELECT pg_sleep(60)"))
        fail("send: %s", PQerrorMessage(c));
    /* Give the query time to reach the backend. */
    struct timespec ts = {0, 500 * 1000 * 1000};
    nanosleep(&ts, NULL);

    PGcancel *cn = PQgetCancel(c);
    char errbuf[256];
    double t0 = now_s();
    if (!cn || !PQcancel(cn, errbuf, sizeof errbuf))
        fail("PQcancel: %s", errbuf);
    PQfreeCancel(cn);

    PGresult *r = PQgetResult(c);
    double elapsed = now_s() - t0;
    if (!r)
        fail("no result after cancel");
    if (PQresultStatus(r) != PGRES_FATAL_ERROR || strcmp(sqlstate(r), "57014") != 0)
        fail("expected 57014, got %s %s: %s", PQresStatus(PQresultStatus(r)), sqlstate(r),
             PQresultErrorMessage(r));
    PQclear(r);
    while ((r = PQgetResult(c)))
        PQclear(r);
    ok("cancel returned 57014 after %.3f s", elapsed);
    printf("elapsed %.3f\n", elapsed);

    /* The session is still usable. */
    PGresult *r2 = PQexec(c, "SELECT 42");
    if (PQresultStatus(r2) != PGRES_TUPLES_OK || strcmp(PQgetvalue(r2, 0, 0), "42") != 0)
        fail("query after cancel: %s", PQerrorMessage(c));
    PQclear(r2);
    ok("session usable after cancel");
    PQfinish(c);
    return 0;
}

/* A cancel of an idle session must not reach the statement after it:
 * PQcancel waits for the server to close the cancel connection, which
 * Postgres does only once it has signalled the backend. */
static int cmd_cancel_idle(const char *uri, int n)
{
    PGconn *c = connect_or_die(uri);
    int cancelled = 0;
    for (int i = 0; i < n; i++) {
        PGcancel *cn = PQgetCancel(c);
        char errbuf[256];
        if (!cn || !PQcancel(cn, errbuf, sizeof errbuf))
            fail("PQcancel %d: %s", i, errbuf);
        PQfreeCancel(cn);
        PGresult *r = PQexec(c, "SELECT pg_sleep(0.02)");
        if (PQresultStatus(r) == PGRES_FATAL_ERROR && strcmp(sqlstate(r), "57014") == 0)
            cancelled++;
        else if (PQresultStatus(r) != PGRES_TUPLES_OK)
            fail("statement %d: %s", i, PQerrorMessage(c));
        PQclear(r);
    }
    ok("%d statements after an idle cancel", n);
    printf("cancelled %d of %d\n", cancelled, n);
    PQfinish(c);
    return 0;
}

/* ---- notify ------------------------------------------------------------ */

static int cmd_notify(const char *uri)
{
    PGconn *listener = connect_or_die(uri);
    PGconn *sender = connect_or_die(uri);
    exec_ok(listener, "LISTEN pgt_channel");

    PGresult *r = PQexec(sender, "SELECT pg_backend_pid()");
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail("pid: %s", PQerrorMessage(sender));
    int sender_pid = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);

    const char *payloads[3] = {"hello", "second payload with spaces", "third"};
    exec_ok(sender, "NOTIFY pgt_channel, 'hello'");
    exec_ok(sender, "SELECT pg_notify('pgt_channel', 'second payload with spaces')");
    exec_ok(sender, "BEGIN; NOTIFY pgt_channel, 'third'; COMMIT");

    int got = 0;
    double deadline = now_s() + 10.0;
    while (got < 3) {
        PGnotify *n;
        while ((n = PQnotifies(listener)) != NULL) {
            if (strcmp(n->relname, "pgt_channel") != 0)
                fail("notification on channel %s", n->relname);
            if (strcmp(n->extra, payloads[got]) != 0)
                fail("notification %d payload '%s', expected '%s'", got, n->extra, payloads[got]);
            if (n->be_pid != sender_pid)
                fail("notification from pid %d, expected %d", n->be_pid, sender_pid);
            got++;
            PQfreemem(n);
        }
        if (got == 3)
            break;
        double left = deadline - now_s();
        if (left <= 0)
            fail("received %d of 3 notifications", got);
        int sock = PQsocket(listener);
        fd_set rfds;
        FD_ZERO(&rfds);
        FD_SET(sock, &rfds);
        struct timeval tv = {(long)left, 0};
        if (select(sock + 1, &rfds, NULL, NULL, &tv) < 0)
            fail("select");
        if (!PQconsumeInput(listener))
            fail("consume: %s", PQerrorMessage(listener));
    }
    ok("3 notifications received in order with payloads and sender pid");

    exec_ok(listener, "UNLISTEN pgt_channel");
    exec_ok(sender, "NOTIFY pgt_channel, 'after unlisten'");
    exec_ok(listener, "SELECT 1");
    PQconsumeInput(listener);
    PGnotify *n = PQnotifies(listener);
    if (n)
        fail("notification after UNLISTEN: %s", n->extra);
    ok("no notification after UNLISTEN");
    PQfinish(listener);
    PQfinish(sender);
    return 0;
}

/* ---- backend PID --------------------------------------------------------- */

static int query_int(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        fail("%s: %s", sql, PQerrorMessage(c));
    int v = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

static PGnotify *wait_notify(PGconn *c, double timeout_s)
{
    double deadline = now_s() + timeout_s;
    for (;;) {
        if (!PQconsumeInput(c))
            fail("consume: %s", PQerrorMessage(c));
        PGnotify *n = PQnotifies(c);
        if (n)
            return n;
        double left = deadline - now_s();
        if (left <= 0)
            fail("no notification within %.0f s", timeout_s);
        int sock = PQsocket(c);
        fd_set rfds;
        FD_ZERO(&rfds);
        FD_SET(sock, &rfds);
        struct timeval tv = {(long)left, (long)((left - (long)left) * 1e6)};
        if (select(sock + 1, &rfds, NULL, NULL, &tv) < 0)
            fail("select");
    }
}

static int cmd_backend_pid(const char *uri)
{
    PGconn *c = connect_or_die(uri);
    int reported = PQbackendPID(c);
    int actual = query_int(c, "SELECT pg_backend_pid()");
    if (reported != actual)
        fail("PQbackendPID %d, pg_backend_pid() %d", reported, actual);
    ok("PQbackendPID %d is pg_backend_pid()", reported);

    exec_ok(c, "SET application_name = 'pgt_backend_pid_check'");
    int listed = query_int(c, "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgt_backend_pid_check'");
    if (listed != reported)
        fail("pg_stat_activity.pid %d, PQbackendPID %d", listed, reported);
    ok("pg_stat_activity.pid is PQbackendPID");

    exec_ok(c, "LISTEN pgt_pid_channel");
    exec_ok(c, "NOTIFY pgt_pid_channel, 'self'");
    PGnotify *n = wait_notify(c, 10.0);
    if (n->be_pid != reported)
        fail("notification from PID %d, PQbackendPID %d", n->be_pid, reported);
    PQfreemem(n);
    ok("a notification names PQbackendPID as its sender");
    PQfinish(c);
    return 0;
}

/* libpq reads one TLS record per PQconsumeInput: Postgres writes what one
 * transaction's commit queued in one go, so both notifications are there
 * after the first read. */
static int cmd_notify_one_read(const char *uri)
{
    PGconn *listener = connect_or_die(uri);
    PGconn *sender = connect_or_die(uri);
    exec_ok(listener, "LISTEN pgt_one_read");
    exec_ok(sender, "BEGIN; NOTIFY pgt_one_read, 'first'; NOTIFY pgt_one_read, 'second'; COMMIT");

    int sock = PQsocket(listener);
    fd_set rfds;
    FD_ZERO(&rfds);
    FD_SET(sock, &rfds);
    struct timeval tv = {10, 0};
    int ready = select(sock + 1, &rfds, NULL, NULL, &tv);
    if (ready <= 0)
        fail("listener never became readable");
    /* Whatever was sent has arrived: only how it was framed decides now. */
    struct timespec settle = {0, 200 * 1000 * 1000};
    nanosleep(&settle, NULL);
    if (!PQconsumeInput(listener))
        fail("consume: %s", PQerrorMessage(listener));
    const char *want[2] = {"first", "second"};
    int got = 0;
    PGnotify *n;
    while ((n = PQnotifies(listener)) != NULL) {
        if (got < 2 && strcmp(n->extra, want[got]) != 0)
            fail("notification %d payload '%s', expected '%s'", got, n->extra, want[got]);
        got++;
        PQfreemem(n);
    }
    if (got != 2)
        fail("%d of 2 notifications after one read (ssl %s)", got, PQsslInUse(listener) ? "on" : "off");
    ok("both notifications of one transaction after one read (ssl %s)", PQsslInUse(listener) ? "on" : "off");
    PQfinish(listener);
    PQfinish(sender);
    return 0;
}

/* ---- notice ------------------------------------------------------------ */

static char notices[4096];

static void on_notice(void *arg, const PGresult *r)
{
    (void)arg;
    const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    size_t used = strlen(notices);
    snprintf(notices + used, sizeof notices - used, "%s:%s|", sev ? sev : "?", msg ? msg : "?");
}

static int cmd_notice(const char *uri)
{
    PGconn *c = connect_or_die(uri);
    PQsetNoticeReceiver(c, on_notice, NULL);
    exec_ok(c, "SET client_min_messages = notice");
    exec_ok(c, "DO $$ BEGIN RAISE NOTICE 'hello %', 42; RAISE WARNING 'careful'; END $$");
    if (strcmp(notices, "NOTICE:hello 42|WARNING:careful|") != 0)
        fail("notices seen: '%s'", notices);
    ok("NoticeResponse relayed: %s", notices);
    PQfinish(c);
    return 0;
}

/* ---- large rows -------------------------------------------------------- */

static void md5_hex(const char *data, size_t len, char out[33])
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;
    EVP_Digest(data, len, d, &dl, EVP_md5(), NULL);
    for (unsigned int i = 0; i < dl; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
    out[32] = 0;
}

static int cmd_largerow(const char *uri, long mb)
{
    if (mb <= 0)
        fail("MB must be positive");
    PGconn *c = connect_or_die(uri);
    long bytes = mb * 1024 * 1024;
    long chunks = bytes / 32; /* md5 hex strings are 32 chars */

    /* Down: one DataRow of `bytes` bytes built from distinct md5 strings. */
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT length(s), md5(s), s FROM "
             "(SELECT string_agg(md5(i::text), '' ORDER BY i) AS s FROM generate_series(1, %ld) i) t",
             chunks);
    double t0 = now_s();
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail("large select: %s", PQerrorMessage(c));
    long server_len = atol(PQgetvalue(r, 0, 0));
    int got_len = PQgetlength(r, 0, 2);
    char md5[33];
    md5_hex(PQgetvalue(r, 0, 2), (size_t)got_len, md5);
    if (server_len != bytes || got_len != bytes)
        fail("row length: server %ld, received %d, expected %ld", server_len, got_len, bytes);
    if (strcmp(md5, PQgetvalue(r, 0, 1)) != 0)
        fail("row md5: received %s, server %s", md5, PQgetvalue(r, 0, 1));
    ok("received a %ld-byte row intact (md5 %s) in %.1f s", (long)got_len, md5, now_s() - t0);

    /* Up: the same bytes back as a parameter (one Bind message of ~`bytes`). */
    char *copy = malloc((size_t)got_len + 1);
    if (!copy)
        fail("malloc");
    memcpy(copy, PQgetvalue(r, 0, 2), (size_t)got_len);
    copy[got_len] = 0;
    PQclear(r);
    const char *params[1] = {copy};
    t0 = now_s();
    r = PQexecParams(c, "SELECT length($1::text), md5($1::text)", 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail("large parameter: %s", PQerrorMessage(c));
    if (atol(PQgetvalue(r, 0, 0)) != bytes || strcmp(PQgetvalue(r, 0, 1), md5) != 0)
        fail("server saw length %s md5 %s, sent %ld md5 %s", PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1),
             bytes, md5);
    ok("sent a %ld-byte parameter intact in %.1f s", bytes, now_s() - t0);
    PQclear(r);
    free(copy);

    /* The connection is still in sync. */
    r = PQexec(c, "SELECT 'after'");
    if (PQresultStatus(r) != PGRES_TUPLES_OK || strcmp(PQgetvalue(r, 0, 0), "after") != 0)
        fail("query after large row: %s", PQerrorMessage(c));
    PQclear(r);
    ok("session usable after large rows");
    PQfinish(c);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s pipeline|cancel|notify|notice|backend_pid|notify_one_read URI | largerow URI MB | cancel_idle URI N\n", argv[0]);
        return 2;
    }
    const char *cmd = argv[1], *uri = argv[2];
    if (strcmp(cmd, "pipeline") == 0)
        return cmd_pipeline(uri);
    if (strcmp(cmd, "cancel") == 0)
        return cmd_cancel(uri);
    if (strcmp(cmd, "cancel_idle") == 0 && argc >= 4)
        return cmd_cancel_idle(uri, atoi(argv[3]));
    if (strcmp(cmd, "notify") == 0)
        return cmd_notify(uri);
    if (strcmp(cmd, "notice") == 0)
        return cmd_notice(uri);
    if (strcmp(cmd, "backend_pid") == 0)
        return cmd_backend_pid(uri);
    if (strcmp(cmd, "notify_one_read") == 0)
        return cmd_notify_one_read(uri);
    if (strcmp(cmd, "largerow") == 0 && argc >= 4)
        return cmd_largerow(uri, atol(argv[3]));
    fprintf(stderr, "unknown command %s\n", cmd);
    return 2;
}

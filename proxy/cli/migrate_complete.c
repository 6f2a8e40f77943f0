/* bin/pgtandem migrate complete --db: with proxies registered on the
 * database, through one of them (the contract must run while every proxy
 * holds its traffic, which only a proxy can do); else the engine's
 * complete here. `complete DIR` completes each of the directory's
 * migrations in flight in the chain's order, as `complete NAME` would.
 * Also the registered proxies, for `migrate status`. */
#include "migrate_cli_internal.h"

#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "migrate_remote.h"
#include "migration.h"
#include "migration_state.h"

/* The proxies registered on the database (a JSON array; empty when none
 * or when the database cannot say). */
json_t *migrate_cli_live_proxies(const char *db)
{
    PGconn *conn = PQconnectdb(db);
    PGresult *r = PQstatus(conn) == CONNECTION_OK ? PQexec(conn, MIG_STATE_FLEET_SQL) : NULL;
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (state && !strcmp(state, "42P01")) {
        PQclear(r);
        r = PQexec(conn, MIG_STATE_FLEET_BEFORE_LEASES_SQL);
    }
    json_t *list = r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
                       ? json_loads(PQgetvalue(r, 0, 0), 0, NULL)
                       : NULL;
    PQclear(r);
    PQfinish(conn);
    return json_is_array(list) ? list : (json_decref(list), json_array());
}

/* Whether something accepts connections at host:port within a second. */
static int admin_reachable(const char *hostport)
{
    char host[160];
    const char *colon = strrchr(hostport, ':');
    if (!colon || (size_t)(colon - hostport) >= sizeof host)
        return 0;
    snprintf(host, sizeof host, "%.*s", (int)(colon - hostport), hostport);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0)
        return 0;
    int ok = 0;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd >= 0 && (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS)) {
        struct pollfd pfd = {fd, POLLOUT, 0};
        int err = 0;
        socklen_t len = sizeof err;
        ok = poll(&pfd, 1, 1000) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
    }
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    return ok;
}

#define FLEET_WAIT_TRIES 40 /* x 500 ms: longer than any lease a proxy runs with by default */

/* With proxies in front of the database, the contract must run while all
 * of them hold their traffic: one of them coordinates it. A registered
 * proxy that cannot be reached is likely gone: its lease is waited out.
 * Returns -1 when no proxy is (or remains) registered. */
static int complete_through_fleet(const struct cli *c)
{
    for (int tries = 0; tries < FLEET_WAIT_TRIES; tries++) {
        json_t *proxies = migrate_cli_live_proxies(c->db);
        size_t n = json_array_size(proxies), i;
        json_t *p;
        json_array_foreach(proxies, i, p) {
            const char *admin = json_string_value(json_object_get(p, "admin"));
            if (!admin || !admin[0] || !admin_reachable(admin))
                continue;
            char url[200];
            snprintf(url, sizeof url, "http://%s", admin);
            fprintf(stderr, "%zu proxies are registered on this database; completing through the one at %s, "
                    "which holds all of them during the contract\n", n, url);
            json_decref(proxies);
            return migrate_remote_main("complete", url, c->opt.target, c->json, c->force, c->revert_window_s);
        }
        json_decref(proxies);
        if (n == 0)
            return -1;
        if (tries == 0)
            fprintf(stderr, "%zu proxies are registered on this database but none answers at its admin address; "
                    "waiting for their leases to run out\n", n);
        struct timespec ts = {0, 500 * 1000000L};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "pgtandem migrate: error: proxies registered on this database keep renewing their leases but "
            "none answers at its admin address; complete through one of them (the contract must run while they "
            "hold their traffic)\n");
    return 1;
}

static int complete_one(const struct cli *c);

/* complete DIR: start DIR started its pending files each as its own
 * migration; once the releases before the last are gone, the whole
 * directory completes, oldest first, each through its own gate and
 * contract. The first that fails stops the rest, which stay in flight. */
static int complete_dir(const struct cli *c)
{
    char err[2048];
    struct migration *list = NULL;
    size_t n = 0;
    json_t *applied = NULL;
    if (migrate_cli_load_chain(c, &list, &n, err, sizeof err) != 0) {
        fprintf(stderr, "pgtandem migrate: error: %s\n", err);
        mig_free_list(list, n);
        return EXIT_INVALID;
    }
    struct engine e;
    int rc = migrate_cli_open_engine(c, &e, 0, err, sizeof err);
    if (rc == ENGINE_OK) {
        rc = engine_applied(&e, &applied, err, sizeof err);
        engine_close(&e);
    }
    if (rc != ENGINE_OK) {
        mig_free_list(list, n);
        return migrate_cli_report(rc, err);
    }
    int done = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        json_t *st = json_object_get(json_object_get(applied, list[i].name), "status");
        int s = mig_status_of_word(json_string_value(st));
        if (s < 0 || !mig_status_in_progress((enum mig_status)s))
            continue;
        struct cli one = *c;
        one.file = one.opt.target = list[i].name;
        fprintf(stderr, "completing %s (%zu of the directory's %zu)\n", list[i].name, i + 1, n);
        rc = complete_one(&one);
        done += rc == 0;
    }
    if (rc == 0 && !done)
        fprintf(stderr, "no migration of %s is in flight; nothing to complete\n", c->file);
    json_decref(applied);
    mig_free_list(list, n);
    return rc;
}

int migrate_cli_complete(const struct cli *c)
{
    if (migrate_cli_need_db(c))
        return EXIT_INVALID;
    if (c->file && migrate_cli_is_directory(c->file))
        return complete_dir(c);
    return complete_one(c);
}

static int complete_one(const struct cli *c)
{
    char err[2048];
    /* The contract must run while every proxy holds its traffic, which only
     * a proxy can do: with proxies registered, one of them runs it. This is
     * the one call from the CLI to a proxy, and a proxy never calls the CLI.
     * Checks alone hold nobody: they run here. */
    if (!c->opt.validate_only) {
        int rc = complete_through_fleet(c);
        if (rc >= 0)
            return rc;
    }
    if (c->revert_window_s > 0) {
        fprintf(stderr, "pgtandem migrate complete: --revert-window-s needs a proxy: it keeps the old shape for"
                " the sessions it routes, and no proxy is registered on this database\n");
        return EXIT_INVALID;
    }
    struct engine e;
    struct engine_contract_report rep = {0};
    int rc = migrate_cli_open_engine(c, &e, 1, err, sizeof err);
    if (rc == ENGINE_OK) {
        rc = engine_complete(&e, &rep, err, sizeof err);
        engine_close(&e);
    }
    if (rep.attempts > 0)
        fprintf(stderr, "contract: %s after %d attempt(s), lock wait %.0fms, total %.0fms\n",
                rc == ENGINE_OK || rep.post_gave_up ? "committed" : "abandoned", rep.attempts, rep.lock_wait_ms,
                rep.total_ms);
    if (rc == ENGINE_OK && c->opt.validate_only)
        printf("every row passes the migration's checks; it is ready for the cutover\n");
    else if (rc == ENGINE_OK)
        printf("migration complete\n");
    return migrate_cli_report(rc, err);
}

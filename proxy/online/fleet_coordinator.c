/* This proxy as the cutover's coordinator (fleet_internal.h): it asks
 * every other live proxy to hold (the hold's row and a NOTIFY, and a
 * message on each one's peer port: fleet_direct.h), counts their
 * acknowledgements as they come (on the peer port, or found in their rows,
 * read every ACK_RECHECK_MS), builds the statements the
 * contract's transaction runs for the fleet (the wait for every
 * acknowledgement in the database, the commit check), and releases the
 * hold with what the contract did. */
#include "fleet.h"
#include "fleet_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet_direct.h"
#include "fleet_sql.h"
#include "log.h"

/* The table read for acknowledgements the peer port did not bring (and
 * leases that ran out): the only way they arrive without a peer port. */
#define ACK_RECHECK_MS 10

void fleet_coordinator_finish(struct fleet *f, int ok, const char *why)
{
    if (!f->co.active)
        return;
    f->co.active = 0;
    evtimer_del(f->co.timeout);
    evtimer_del(f->co.recheck);
    f->jobs &= ~(1u << FLEET_JOB_ACK_CHECK);
    fleet_held_fn done = f->co.done;
    f->co.done = NULL;
    if (done)
        done(f->co.ctx, ok, why);
}

void fleet_coordinator_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fleet *f = arg;
    char why[640];
    snprintf(why, sizeof why, "%s within the drain timeout (%d ms)",
             f->co.missing[0] ? f->co.missing : "the fleet's hold could not be set up", f->co.drain_ms);
    fleet_coordinator_finish(f, 0, why);
}

void fleet_coordinator_recheck_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fleet *f = arg;
    if (f->co.active && f->co.epoch)
        fleet_want(f, FLEET_JOB_ACK_CHECK);
}

static void on_ack_check(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    struct fleet *f = ctx;
    if (fleet_failed(f, "checking the acknowledgements", error, sqlstate) || !f->co.active)
        return;
    if (res && PQntuples(res) == 1 && PQnfields(res) > 1 && !PQgetisnull(res, 0, 1)) {
        char *acked = strdup(PQgetvalue(res, 0, 1)), *save = NULL;
        /* those the peer port has not said */
        for (char *id = acked ? strtok_r(acked, "\n", &save) : NULL; id && f->co.active;
             id = strtok_r(NULL, "\n", &save))
            fleet_count_ack(f, id, FLEET_VIA_DATABASE);
        free(acked);
        if (!f->co.active)
            return; /* every one counted: finished */
    }
    if (res && PQntuples(res) == 1 && PQgetisnull(res, 0, 0)) {
        fleet_coordinator_finish(f, 1, NULL);
        return;
    }
    snprintf(f->co.missing, sizeof f->co.missing, "proxies %s did not acknowledge the hold",
             res && PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "?");
    fleet_add_timer(f->co.recheck, ACK_RECHECK_MS); /* a lease may run out meanwhile */
}

static void on_hold_created(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    struct fleet *f = ctx;
    if (fleet_failed(f, "asking the fleet to hold", error, sqlstate)) {
        fleet_coordinator_finish(f, 0, error);
        return;
    }
    f->co.epoch = res && PQntuples(res) == 1 ? atoll(PQgetvalue(res, 0, 0)) : 0;
    json_t *others = res && PQntuples(res) == 1 ? json_loads(PQgetvalue(res, 0, 2), 0, NULL) : NULL;
    json_decref(f->co.expected);
    f->co.expected = json_array();
    size_t i;
    json_t *o;
    json_array_foreach(others, i, o) {
        json_array_append(f->co.expected, json_object_get(o, "id"));
    }
    if (f->co.release_pending) { /* given up while the row was being written */
        f->co.release_pending = 0;
        f->co.release_epoch = f->co.epoch;
        json_decref(others);
        fleet_want(f, FLEET_JOB_RELEASE);
        return;
    }
    memset(f->co.acks, 0, sizeof f->co.acks);
    f->co.written_us = fleet_now_us();
    int asked = f->direct && others ? fleet_direct_ask(f->direct, f->co.epoch, f->co.drain_ms, f->co.hold_ms, others)
                                    : 0;
    json_decref(others);
    log_info("fleet: hold %lld written; %zu other proxies asked (%d on the peer port too)", f->co.epoch,
             json_array_size(f->co.expected), asked);
    long long epoch = f->co.epoch;
    fleet_announced_fn announced = f->co.announced;
    f->co.announced = NULL;
    if (announced)
        announced(f->co.ctx);
    if (!f->co.active || f->co.epoch != epoch) /* given up meanwhile */
        return;
    if (json_array_size(f->co.expected) == 0) { /* nobody else: no acknowledgement to wait for */
        fleet_coordinator_finish(f, 1, NULL);
        return;
    }
    /* Acknowledgements are counted as they arrive; the table is read now
     * and then for leases that run out and proxies that join. The commit
     * check decides in the end either way. */
    fleet_add_timer(f->co.recheck, ACK_RECHECK_MS);
}

/* An acknowledgement arrived (in the database or on the peer port): the
 * hold is complete once every proxy that was live when it began has sent
 * one. One that came on the peer port only is checked in the database
 * before the commit (fleet_held_wait_sql). */
void fleet_count_ack(struct fleet *f, const char *who, enum fleet_via via)
{
    size_t i;
    json_t *id;
    json_array_foreach(f->co.expected, i, id) {
        if (json_is_string(id) && strcmp(json_string_value(id), who) == 0) {
            log_info("fleet: hold %lld: %s holds (said %s), %.2f ms after the hold was written", f->co.epoch, who,
                     via == FLEET_VIA_PEER ? "on the peer port" : "in the database",
                     (double)(fleet_now_us() - f->co.written_us) / 1000.0);
            json_array_remove(f->co.expected, i);
            f->co.acks[via]++;
            f->acks[via]++;
            break;
        }
    }
    if (json_array_size(f->co.expected) == 0)
        fleet_coordinator_finish(f, 1, NULL);
}

void fleet_hold_acks(const struct fleet *f, int *database, int *peer)
{
    *database = f->co.acks[FLEET_VIA_DATABASE];
    *peer = f->co.acks[FLEET_VIA_PEER];
}

int fleet_hold_all(struct fleet *f, const char *migration, int drain_ms, int hold_ms, fleet_announced_fn announced,
                   fleet_held_fn done, void *ctx)
{
    if (f->link != FLEET_LINK_UP || !pgasync_ready(&f->db) || f->co.active)
        return -1;
    f->co.active = 1;
    f->co.epoch = 0;
    f->co.release_pending = 0;
    f->co.missing[0] = '\0';
    snprintf(f->co.migration, sizeof f->co.migration, "%s", migration);
    f->co.drain_ms = drain_ms;
    f->co.hold_ms = hold_ms;
    f->co.announced = announced;
    f->co.done = done;
    f->co.ctx = ctx;
    fleet_add_timer(f->co.timeout, drain_ms);
    fleet_want(f, FLEET_JOB_HOLD);
    return 0;
}

char *fleet_commit_check_sql(const struct fleet *f)
{
    if (!f->co.epoch)
        return strdup("");
    size_t n = strlen(FLEET_COMMIT_CHECK_SQL) + 128;
    char *sql = malloc(n);
    if (sql)
        snprintf(sql, n, FLEET_COMMIT_CHECK_SQL, f->co.epoch, f->co.epoch, f->co.epoch, f->lease_ms, f->co.epoch,
                 f->co.epoch);
    return sql;
}

/* Replaces $1 and $2 in FLEET_BYPASSING_SQL (which has no other '$'). */
static char *bypassing_with(const char *tables, const char *lease)
{
    size_t cap = strlen(FLEET_BYPASSING_SQL) + 1 + 4 * (strlen(tables) + strlen(lease)) + 16, used = 0;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    for (const char *p = FLEET_BYPASSING_SQL; *p; p++) {
        const char *v = p[0] == '$' && p[1] == '1' ? tables : p[0] == '$' && p[1] == '2' ? lease : NULL;
        size_t n = v ? strlen(v) : 1;
        if (used + n + 1 > cap) {
            free(out);
            return NULL;
        }
        memcpy(out + used, v ? v : p, n);
        used += n;
        p += v ? 1 : 0;
    }
    out[used] = '\0';
    return out;
}

char *fleet_held_wait_sql(const struct fleet *f, const char *tables_literal, int wait_ms)
{
    if (!f->co.epoch)
        return strdup("");
    size_t wait_n = strlen(FLEET_HELD_WAIT_SQL) + 128;
    char lease[16], *wait = malloc(wait_n);
    if (!wait)
        return NULL;
    snprintf(lease, sizeof lease, "%d", f->lease_ms);
    snprintf(wait, wait_n, FLEET_HELD_WAIT_SQL, wait_ms, f->co.epoch, f->co.epoch, f->lease_ms, f->co.epoch,
             wait_ms);
    char *select = bypassing_with(tables_literal, lease);
    size_t n = select ? strlen(wait) + strlen(select) + 3 : 0;
    char *sql = select ? malloc(n) : NULL;
    if (sql)
        snprintf(sql, n, ";\n%s%s", wait, select);
    free(select);
    free(wait);
    return sql;
}

void fleet_release_all(struct fleet *f, enum fleet_outcome outcome)
{
    int had_row = f->co.epoch != 0;
    int in_flight = f->co.active && !had_row && (f->jobs & (1u << FLEET_JOB_HOLD)) == 0;
    f->co.done = NULL;
    f->co.announced = NULL;
    fleet_coordinator_finish(f, 0, NULL);
    if (f->direct && had_row && outcome != FLEET_UNKNOWN)
        fleet_direct_release(f->direct, f->co.epoch, outcome == FLEET_COMMITTED);
    else if (f->direct)
        fleet_direct_drop(f->direct);
    if (had_row) {
        f->co.release_epoch = f->co.epoch;
        f->co.epoch = 0;
        fleet_want(f, FLEET_JOB_RELEASE);
    } else if (in_flight) {
        f->co.release_pending = 1;
    }
    f->jobs &= ~(1u << FLEET_JOB_HOLD);
}

static void on_released(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    struct fleet *f = ctx;
    fleet_failed(f, "releasing the fleet", error, sqlstate);
}

int fleet_send_hold(struct fleet *f)
{
    char a[32], b[32], lease[16];
    snprintf(lease, sizeof lease, "%d", f->lease_ms);
    snprintf(a, sizeof a, "%d", f->co.drain_ms);
    snprintf(b, sizeof b, "%d", f->co.hold_ms);
    char *pids = fleet_pids_text(f);
    int rc = fleet_send_sql(f, FLEET_HOLD_SQL, 6,
                            (const char *[]){f->co.migration, f->id, a, b, pids ? pids : "[]", lease},
                            on_hold_created);
    free(pids);
    return rc;
}

int fleet_send_ack_check(struct fleet *f)
{
    char c[32], lease[16];
    snprintf(lease, sizeof lease, "%d", f->lease_ms);
    snprintf(c, sizeof c, "%lld", f->co.epoch);
    return fleet_send_sql(f, FLEET_ACK_CHECK_SQL, 3, (const char *[]){f->id, lease, c}, on_ack_check);
}

int fleet_send_release(struct fleet *f)
{
    char a[32];
    snprintf(a, sizeof a, "%lld", f->co.release_epoch);
    return fleet_send_sql(f, FLEET_RELEASE_SQL, 1, (const char *[]){a}, on_released);
}

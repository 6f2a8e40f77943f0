/* This proxy as the cutover's coordinator (fleet_internal.h): it asks
 * every other live proxy to hold (the hold's row, then a message on each
 * one's peer port: fleet_direct.h; a NOTIFY only for those the peer port
 * does not reach), counts their acknowledgements as they come (on the peer
 * port, or found in their rows, read every ACK_RECHECK_MS), builds the
 * statements the contract's transaction runs for the fleet (the peer
 * acknowledgements written to their rows, the wait for every one in the
 * database, the commit check), and releases the hold with what the
 * contract did: on the peer port, and through the database for those it
 * does not reach.
 *
 * One wake-up per proxy and event: a NOTIFY wakes every listening backend
 * and then every proxy, and with two of them per cutover (the hold's, the
 * contract's) a fleet of 64 on 2 cores spent some 70 ms of its hold on
 * them. The database stays the record and the fallback: the hold's row
 * is written before anyone is asked, the commit check reads every
 * acknowledgement from the rows, and a participant that hears no release
 * reads the outcome from the hold's row (fleet_participant.c). */
#include "fleet.h"
#include "fleet_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet_direct.h"
#include "fleet_sql.h"
#include "log.h"
#include "migration_sql.h"

/* The table read for acknowledgements the peer port did not bring (and
 * leases that ran out): the only way they arrive without a peer port. */
#define ACK_RECHECK_MS 10
/* A participant asked on the peer port that has not said "held" this long
 * after the hold was written is told through the database too (a NOTIFY:
 * a lost message, a peer port that swallows what it gets): 100 ms, or
 * 3 ms per participant in a larger fleet, whose answers take longer to
 * come in on a few cores (128 proxies on 2: 120-140 ms), and whom a NOTIFY
 * would all wake. */
#define HOLD_NOTIFY_AFTER_MS 100
#define HOLD_NOTIFY_PER_PARTICIPANT_MS 3

static long hold_notify_after_ms(const struct fleet *f)
{
    long per = (long)f->co.participants * HOLD_NOTIFY_PER_PARTICIPANT_MS;
    return per > HOLD_NOTIFY_AFTER_MS ? per : HOLD_NOTIFY_AFTER_MS;
}

/* Those the peer port may not reach are told through the database. */
static void notify_hold(struct fleet *f)
{
    if (f->co.active && f->co.epoch && !f->co.notified) {
        f->co.notified = 1;
        fleet_want(f, FLEET_JOB_HOLD_NOTIFY);
    }
}

void fleet_coordinator_lost(struct fleet *f, long long epoch, const char *who)
{
    if (!f->co.active || epoch != f->co.epoch || f->co.notified)
        return;
    log_info("fleet: hold %lld: the peer port did not reach %s; telling the fleet through the database", epoch, who);
    notify_hold(f);
}

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
            fleet_count_ack(f, id, FLEET_VIA_DATABASE, NULL);
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
    if (!f->co.notified && fleet_now_us() - f->co.written_us >= (uint64_t)hold_notify_after_ms(f) * 1000ULL) {
        log_info("fleet: hold %lld: %s %ld ms after it was written; telling the fleet through the database",
                 f->co.epoch, f->co.missing, hold_notify_after_ms(f));
        notify_hold(f);
    }
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
    f->co.notified = res && PQntuples(res) == 1 && !PQgetisnull(res, 0, 1);
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
    json_decref(f->co.peer_acks);
    f->co.peer_acks = json_array();
    f->co.participants = json_array_size(f->co.expected);
    f->co.written_us = fleet_now_us();
    int asked = f->direct && others ? fleet_direct_ask(f->direct, f->co.epoch, f->co.drain_ms, f->co.hold_ms, others)
                                    : 0;
    json_decref(others);
    log_info("fleet: hold %lld written; %zu other proxies asked, %d on the peer port%s", f->co.epoch,
             f->co.participants, asked, f->co.notified ? ", the others through the database" : "");
    if ((size_t)asked < f->co.participants)
        notify_hold(f);
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
 * one. One that came on the peer port only is written to its row by the
 * contract (fleet_held_wait_sql), where the commit check reads it. */
void fleet_count_ack(struct fleet *f, const char *who, enum fleet_via via, const char *pids)
{
    size_t i;
    json_t *id;
    json_array_foreach(f->co.expected, i, id) {
        if (json_is_string(id) && strcmp(json_string_value(id), who) == 0) {
            log_info("fleet: hold %lld: %s holds (said %s), %.2f ms after the hold was written", f->co.epoch, who,
                     via == FLEET_VIA_PEER ? "on the peer port" : "in the database",
                     (double)(fleet_now_us() - f->co.written_us) / 1000.0);
            if (via == FLEET_VIA_PEER && f->co.peer_acks)
                json_array_append_new(f->co.peer_acks,
                                      json_pack("{s:s,s:o}", "id", who, "pids",
                                                !pids ? json_null() : json_string(strcmp(pids, "-") ? pids : "")));
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
    f->co.notified = 0;
    f->co.participants = 0;
    json_decref(f->co.peer_acks);
    f->co.peer_acks = NULL;
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
        snprintf(sql, n, FLEET_COMMIT_CHECK_SQL, f->co.epoch, f->co.epoch, f->co.epoch, f->lease_ms, f->co.epoch);
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

/* The peer acknowledgements written to their rows ("" when none). */
static char *peer_acks_sql(const struct fleet *f)
{
    if (!json_array_size(f->co.peer_acks))
        return strdup("");
    char *acks = json_dumps(f->co.peer_acks, JSON_COMPACT);
    struct mig_str lit = {0};
    if (acks)
        mig_str_literal(&lit, acks);
    free(acks);
    char *literal = mig_str_take(&lit);
    size_t n = literal ? strlen(FLEET_PEER_ACKS_SQL) + strlen(literal) + 32 : 0;
    char *sql = n ? malloc(n) : NULL;
    if (sql)
        snprintf(sql, n, FLEET_PEER_ACKS_SQL, f->co.epoch, literal);
    free(literal);
    return sql;
}

char *fleet_held_wait_sql(const struct fleet *f, const char *tables_literal, int wait_ms)
{
    if (!f->co.epoch)
        return strdup("");
    size_t wait_n = strlen(FLEET_HELD_WAIT_SQL) + 128;
    char lease[16], *wait = malloc(wait_n);
    char *acks = peer_acks_sql(f);
    if (!wait || !acks) {
        free(wait);
        free(acks);
        return NULL;
    }
    snprintf(lease, sizeof lease, "%d", f->lease_ms);
    snprintf(wait, wait_n, FLEET_HELD_WAIT_SQL, wait_ms, f->co.epoch, f->co.epoch, f->lease_ms, f->co.epoch,
             wait_ms);
    char *select = bypassing_with(tables_literal, lease);
    size_t n = select ? strlen(acks) + strlen(wait) + strlen(select) + 3 : 0;
    char *sql = select ? malloc(n) : NULL;
    if (sql)
        snprintf(sql, n, ";\n%s%s%s", acks, wait, select);
    free(select);
    free(wait);
    free(acks);
    return sql;
}

void fleet_release_all(struct fleet *f, enum fleet_outcome outcome)
{
    int had_row = f->co.epoch != 0;
    int in_flight = f->co.active && !had_row && (f->jobs & (1u << FLEET_JOB_HOLD)) == 0;
    f->co.done = NULL;
    f->co.announced = NULL;
    fleet_coordinator_finish(f, 0, NULL);
    /* told on the peer port: those that said "held" there; the others (and
     * all of them when the outcome is not known here) read it from the
     * row the release writes, woken by its NOTIFY */
    size_t told = 0;
    if (f->direct && had_row && outcome != FLEET_UNKNOWN)
        told = (size_t)fleet_direct_release(f->direct, f->co.epoch, outcome == FLEET_COMMITTED);
    else if (f->direct)
        fleet_direct_drop(f->direct);
    if (had_row) {
        f->co.release_notify = told < f->co.participants;
        f->co.release_epoch = f->co.epoch;
        f->co.epoch = 0;
        fleet_want(f, FLEET_JOB_RELEASE);
    } else if (in_flight) {
        f->co.release_pending = 1;
        f->co.release_notify = 1;
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
    const char *notify = f->direct ? "" : "always";
    int rc = fleet_send_sql(f, FLEET_HOLD_SQL, 7,
                            (const char *[]){f->co.migration, f->id, a, b, pids ? pids : "[]", lease, notify},
                            on_hold_created);
    free(pids);
    return rc;
}

static void on_hold_notified(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    fleet_failed(ctx, "telling the hold through the database", error, sqlstate);
}

int fleet_send_hold_notify(struct fleet *f)
{
    char e[32], a[32], b[32];
    snprintf(e, sizeof e, "%lld", f->co.epoch);
    snprintf(a, sizeof a, "%d", f->co.drain_ms);
    snprintf(b, sizeof b, "%d", f->co.hold_ms);
    return fleet_send_sql(f, FLEET_HOLD_NOTIFY_SQL, 4, (const char *[]){e, a, b, f->id}, on_hold_notified);
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
    return fleet_send_sql(f, FLEET_RELEASE_SQL, 2, (const char *[]){a, f->co.release_notify ? "notify" : ""},
                          on_released);
}

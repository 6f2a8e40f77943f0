/* This proxy holding its traffic for another proxy's cutover
 * (fleet_internal.h): a hold learnt of (on the peer port, on a NOTIFY, in
 * the table) is served at once, acknowledged once the relay has drained
 * (on the peer port, which the coordinator writes to our row; in our row
 * ourselves when it came otherwise), and ends with its release, with the
 * outcome read from the hold's row when no release came on the peer port
 * within RELEASE_LOOK_MS (or its channel broke), or with our own closing
 * of it when no release comes at all; a newer hold asked for meanwhile
 * waits for it or replaces it. */
#include "fleet_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet_direct.h"
#include "fleet_sql.h"
#include "log.h"
#include "relay_control.h"

/* A hold still served this long after our "held" reads its row: the
 * release told on the peer port may have been lost. Holds end within
 * tens of milliseconds; the bound (hold_ms) is seconds. */
#define RELEASE_LOOK_MS 200

/* Our row's PIDs are no longer known to be the last heartbeat's (we sent
 * others, or wrote them ourselves): "=" waits for the next heartbeat. */
static void forget_heartbeat_pids(struct fleet *f)
{
    free(f->heartbeat_pids);
    f->heartbeat_pids = NULL;
}

/* The backend PIDs for a "held" on the peer port: "1,2", "-" for none,
 * "=" when they are what the last heartbeat wrote; NULL when they differ
 * and do not fit (our row is written then). Caller frees. */
static char *held_pids(const struct fleet *f)
{
    char *json = fleet_pids_text(f);
    if (!json)
        return NULL;
    char *out = NULL;
    size_t n = strlen(json);
    if (f->heartbeat_pids && !strcmp(json, f->heartbeat_pids))
        out = strdup("=");
    else if (!strcmp(json, "[]"))
        out = strdup("-");
    else if (n >= 2 && n < 700 && json[0] == '[' && json[n - 1] == ']')
        out = strndup(json + 1, n - 2);
    free(json);
    return out;
}

/* The hold that waited for the one served to end (another_hold). */
static void begin_next(struct fleet *f)
{
    if (!f->part.next_epoch)
        return;
    long long next = f->part.next_epoch;
    f->part.next_epoch = 0;
    fleet_participant_begin(f, next, f->part.next_drain_ms, f->part.next_hold_ms, 0, f->part.next_coordinator,
                            f->part.next_learned);
}

/* Says "held" on the peer channel the request came on, with our
 * sessions' PIDs: 1 when sent. */
static int held_on_peer(struct fleet *f)
{
    if (!f->direct || !fleet_direct_asked(f->direct, f->part.epoch))
        return 0;
    char *pids = held_pids(f);
    int sent = pids && fleet_direct_held(f->direct, f->part.epoch, pids);
    if (sent && strcmp(pids, "=") != 0) /* the contract may write these to our row */
        forget_heartbeat_pids(f);
    free(pids);
    return sent;
}

/* Drained: said on the peer channel the request came on, where the
 * coordinator counts it and its contract writes it to our row; otherwise
 * (learnt of through the database, or the channel gone) in our row. */
static void on_participant_drained(void *ctx, int drained, uint64_t waited_us)
{
    struct fleet *f = ctx;
    if (!f->part.active)
        return;
    if (!drained) { /* the relay resumed by itself; the coordinator gives up on us */
        log_warn("fleet: hold %lld: sessions did not reach a boundary within %d ms", f->part.epoch,
                 f->part.drain_ms);
        f->part.active = 0;
        evtimer_del(f->part.deadline);
        evtimer_del(f->part.look);
        if (f->direct)
            fleet_direct_forget(f->direct, f->part.epoch);
        begin_next(f);
        return;
    }
    f->part.drained_us = fleet_now_us();
    f->part.drained = 1;
    if (held_on_peer(f)) {
        log_info("fleet: hold %lld: drained after %.2f ms; said so on the peer port", f->part.epoch,
                 (double)waited_us / 1000.0);
        /* not `confirmed`: a holder of our key could have asked for an
         * epoch no coordinator wrote, which must not become our newest
         * (the row read for the release tells) */
        f->part.peer_only = 1;
        f->part.acked_us = f->part.drained_us;
    } else {
        log_info("fleet: hold %lld: drained after %.2f ms; acknowledging in the database", f->part.epoch,
                 (double)waited_us / 1000.0);
        fleet_want(f, FLEET_JOB_ACK);
    }
    fleet_add_timer(f->part.look, RELEASE_LOOK_MS);
}

/* The release (or our own closing of the hold) says whether the contract
 * committed: then the sessions' statements are prepared again first. A
 * hold whose row was confirmed, or that the coordinator released itself,
 * is not joined again; a newer one that waited is begun. */
void fleet_participant_finish(struct fleet *f, int committed, enum fleet_via via)
{
    if (!f->part.active)
        return;
    f->part.active = 0;
    evtimer_del(f->part.deadline);
    evtimer_del(f->part.look);
    f->jobs &= ~((1u << FLEET_JOB_ACK) | (1u << FLEET_JOB_ABANDON) | (1u << FLEET_JOB_HOLD_LOOK));
    if ((f->part.confirmed || via == FLEET_VIA_PEER) && f->part.epoch > f->part.last_epoch)
        f->part.last_epoch = f->part.epoch;
    uint64_t released_us = fleet_now_us();
    int reprepared = committed && f->part.drained ? relay_reprepare(f->relay) : 0;
    relay_forget(f->relay, f);
    struct relay_hold_stats st = {0, 0};
    relay_release(f->relay, &st);
    uint64_t resumed_us = fleet_now_us();
    const struct fleet_participant_hold *h = &f->part;
    log_info("fleet: hold %lld steps (ms after it was learnt of): drained %.2f, acknowledged %.2f,"
             " release heard %.2f (by the %s), statements prepared again and traffic flowing %.2f", h->epoch,
             h->drained_us ? (double)(h->drained_us - h->learned_us) / 1000.0 : -1.0,
             h->acked_us ? (double)(h->acked_us - h->learned_us) / 1000.0 : -1.0,
             (double)(released_us - h->learned_us) / 1000.0, fleet_via_name(via),
             (double)(resumed_us - h->learned_us) / 1000.0);
    if (f->direct)
        fleet_direct_forget(f->direct, f->part.epoch);
    f->holds_released[via]++;
    f->last = (struct fleet_last_hold){f->part.epoch, f->part.learned, via, committed, f->part.confirmed, st.held_ms};
    log_info("fleet: hold %lld ended (%s): traffic held %.2f ms, %d statements prepared again (learnt of on the %s,"
             " released by the %s)", f->part.epoch, committed ? "contract committed" : "nothing changed", st.held_ms,
             reprepared, f->part.learned == FLEET_VIA_PEER ? "peer port" : "database",
             via == FLEET_VIA_PEER       ? "coordinator on the peer port"
             : via == FLEET_VIA_DATABASE ? "database"
                                         : "proxy itself");
    begin_next(f);
}

void fleet_participant_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fleet *f = arg;
    if (!f->part.active)
        return;
    if (f->link != FLEET_LINK_UP) {
        log_error("fleet: hold %lld: no release and no database to ask; resuming", f->part.epoch);
        fleet_participant_finish(f, 0, FLEET_VIA_SELF);
        return;
    }
    log_warn("fleet: hold %lld: no release within %d ms; closing the hold ourselves", f->part.epoch,
             f->part.hold_ms);
    fleet_want(f, FLEET_JOB_ABANDON);
}

/* A hold to begin once the one served ends (fleet_participant_finish). */
static void remember_next(struct fleet *f, long long epoch, int drain_ms, int hold_ms, const char *coordinator,
                          enum fleet_via via)
{
    if (f->part.next_epoch && f->part.next_epoch >= epoch)
        return;
    f->part.next_epoch = epoch;
    f->part.next_drain_ms = drain_ms;
    f->part.next_hold_ms = hold_ms;
    f->part.next_learned = via;
    snprintf(f->part.next_coordinator, sizeof f->part.next_coordinator, "%s", coordinator);
}

/* Another hold while one is served. One our row acknowledges (or may: the
 * answer is on its way), or that we said "held" to on the peer port (a
 * contract may count on it), is treated as real: an older request is stale, and a newer
 * one means its release was missed (or the newer one is forged), so it is
 * closed through its row, which says whether it committed, and the newer
 * one begins after. One not yet acknowledged may be forged: an older
 * request waits for it to end, a newer one replaces it (nothing in the
 * database counts on it). Returns 1 when the caller begins the new one now. */
static int another_hold(struct fleet *f, long long epoch, int drain_ms, int hold_ms, const char *coordinator,
                        enum fleet_via via)
{
    /* a "held" on the peer port may be counted by a contract already */
    int settled = f->part.confirmed || f->part.acking == f->part.epoch || f->part.peer_only;
    if (settled && epoch < f->part.epoch)
        return 0;
    if (settled || epoch < f->part.epoch) {
        remember_next(f, epoch, drain_ms, hold_ms, coordinator, via);
        if (settled && !f->part.abandoning) {
            f->part.abandoning = 1;
            fleet_want(f, FLEET_JOB_ABANDON);
        }
        return 0;
    }
    return 1;
}

void fleet_participant_begin(struct fleet *f, long long epoch, int drain_ms, int hold_ms, long long age_ms,
                             const char *coordinator, enum fleet_via via)
{
    if (f->part.active && f->part.epoch == epoch) { /* heard of again, the other way */
        if (via == FLEET_VIA_PEER && f->part.drained)
            held_on_peer(f);
        /* told through the database after our "held" on the peer port: the
         * coordinator did not hear it; our row says it now */
        if (via == FLEET_VIA_DATABASE && f->part.drained && f->part.peer_only && !f->part.acking) {
            f->part.peer_only = 0;
            fleet_want(f, FLEET_JOB_ACK);
        }
        return;
    }
    if (epoch <= f->part.last_epoch)
        return;
    struct fleet_participant_hold waiting = f->part; /* an older request that waits, if any */
    if (f->part.active) {
        if (!another_hold(f, epoch, drain_ms, hold_ms, coordinator, via))
            return;
        f->part.next_epoch = 0; /* kept for after the new one, not begun now */
        fleet_participant_finish(f, 0, FLEET_VIA_SELF);
    }
    struct event *deadline = f->part.deadline, *look = f->part.look;
    f->part = (struct fleet_participant_hold){.active = 1, .epoch = epoch, .last_epoch = f->part.last_epoch,
                                              .drain_ms = drain_ms, .hold_ms = hold_ms, .deadline = deadline,
                                              .look = look, .learned = via, .learned_us = fleet_now_us()};
    snprintf(f->part.coordinator, sizeof f->part.coordinator, "%s", coordinator);
    if (waiting.active && waiting.next_epoch && waiting.next_epoch > f->part.last_epoch)
        remember_next(f, waiting.next_epoch, waiting.next_drain_ms, waiting.next_hold_ms, waiting.next_coordinator,
                      waiting.next_learned);
    f->holds_learned[via]++;
    long remaining = hold_ms - (long)age_ms;
    fleet_add_timer(f->part.deadline, remaining > 0 ? remaining : 0);
    log_info("fleet: hold %lld asked for by %s (on the %s); holding traffic at transaction boundaries", epoch,
             coordinator, via == FLEET_VIA_PEER ? "peer port" : "database");
    char reason[192];
    snprintf(reason, sizeof reason, "fleet hold %lld for the cutover run by %.96s (at most %d ms)", epoch,
             coordinator, hold_ms);
    if (relay_hold(f->relay, "fleet_hold", reason, drain_ms, on_participant_drained, f) != 0) {
        log_warn("fleet: hold %lld: cannot hold traffic now", epoch);
        f->part.active = 0;
        evtimer_del(f->part.deadline);
    }
}

static void on_acked(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    struct fleet *f = ctx;
    long long epoch = f->part.acking;
    f->part.acking = 0;
    if (fleet_failed(f, "acknowledging the hold", error, sqlstate))
        return;
    if (!f->part.active || f->part.epoch != epoch || !res || PQntuples(res) != 1 || PQnfields(res) < 4)
        return;
    if (PQgetvalue(res, 0, 0)[0] == 't') {
        f->part.confirmed = 1;
        f->part.acked_us = fleet_now_us();
        if (epoch > f->part.last_epoch)
            f->part.last_epoch = epoch;
        if (f->part.next_epoch && !f->part.abandoning) { /* a newer one waits: see fleet_participant_begin */
            f->part.abandoning = 1;
            fleet_want(f, FLEET_JOB_ABANDON);
        }
        return;
    }
    if (PQnfields(res) > 4 && PQgetvalue(res, 0, 4)[0] == 't' && PQgetvalue(res, 0, 2)[0] != 't') {
        /* our row is locked: a contract writes our "held" said on the
         * peer port; the release tells the rest */
        log_info("fleet: hold %lld: our row is locked (a contract writes it); holding until the release", epoch);
        f->part.confirmed = 1;
        return;
    }
    if (PQgetvalue(res, 0, 1)[0] == 't') { /* released before we could acknowledge */
        fleet_participant_finish(f, PQgetvalue(res, 0, 3)[0] == 't', FLEET_VIA_DATABASE);
        return;
    }
    f->holds_unconfirmed++;
    log_warn("fleet: hold %lld asked for by %s is not in the database: no coordinator asked for it; resuming", epoch,
             f->part.coordinator);
    fleet_participant_finish(f, 0, FLEET_VIA_SELF);
}

static void on_abandoned(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    struct fleet *f = ctx;
    if (fleet_failed(f, "closing the hold", error, sqlstate)) {
        fleet_participant_finish(f, 0, FLEET_VIA_SELF);
        return;
    }
    fleet_participant_finish(f, res && PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't', FLEET_VIA_SELF);
}

int fleet_send_ack(struct fleet *f)
{
    forget_heartbeat_pids(f); /* our row says this ack's PIDs from now on */
    char a[32];
    f->part.acking = f->part.epoch;
    snprintf(a, sizeof a, "%lld", f->part.epoch);
    char *pids = fleet_pids_text(f);
    int rc = fleet_send_sql(f, FLEET_ACK_SQL, 3, (const char *[]){f->id, a, pids ? pids : "[]"}, on_acked);
    free(pids);
    return rc;
}

int fleet_send_abandon(struct fleet *f)
{
    char a[32];
    snprintf(a, sizeof a, "%lld", f->part.epoch);
    return fleet_send_sql(f, FLEET_RELEASE_SQL, 2, (const char *[]){a, "notify"}, on_abandoned);
}

/* ---- a release the peer port did not bring ---- */

void fleet_participant_look_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fleet *f = arg;
    if (f->part.active && !f->part.abandoning)
        fleet_want(f, FLEET_JOB_HOLD_LOOK);
}

void fleet_participant_channel_lost(struct fleet *f, long long epoch)
{
    if (!f->part.active || f->part.epoch != epoch || f->part.abandoning)
        return;
    log_info("fleet: hold %lld: the coordinator's peer channel closed before its release; reading the hold's row",
             epoch);
    evtimer_del(f->part.look);
    fleet_want(f, FLEET_JOB_HOLD_LOOK);
}

static void on_hold_looked(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    struct fleet *f = ctx;
    long long epoch = f->part.looking;
    f->part.looking = 0;
    if (fleet_failed(f, "reading the hold's row", error, sqlstate))
        return;
    if (!f->part.active || f->part.epoch != epoch || f->part.abandoning)
        return;
    if (!res || PQntuples(res) != 1) {
        f->holds_unconfirmed++;
        log_warn("fleet: hold %lld asked for by %s is not in the database: no coordinator asked for it; resuming",
                 epoch, f->part.coordinator);
        fleet_participant_finish(f, 0, FLEET_VIA_SELF);
        return;
    }
    int released = PQgetvalue(res, 0, 0)[0] == 't', committed = PQgetvalue(res, 0, 1)[0] == 't';
    if (released || committed) {
        log_info("fleet: hold %lld: no release came on the peer port; the hold's row says the contract %s",
                 epoch, committed ? "committed" : "did not commit and the hold is closed");
        fleet_participant_finish(f, committed, FLEET_VIA_DATABASE);
        return;
    }
    f->part.confirmed = 1; /* its row exists: a coordinator asked for it */
    if (epoch > f->part.last_epoch)
        f->part.last_epoch = epoch;
    fleet_add_timer(f->part.look, RELEASE_LOOK_MS);
}

int fleet_send_hold_look(struct fleet *f)
{
    char a[32];
    f->part.looking = f->part.epoch;
    snprintf(a, sizeof a, "%lld", f->part.epoch);
    return fleet_send_sql(f, FLEET_HOLD_LOOK_SQL, 1, (const char *[]){a}, on_hold_looked);
}

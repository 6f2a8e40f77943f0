/* The fleet (see fleet.h): membership, following the migration, and both
 * sides of the fleet-wide hold, on one non-blocking connection of its own.
 * This file keeps the public API and the lifecycle, hears what the other
 * proxies say (NOTIFY on the fleet's connection, peer messages) and hands
 * it to the part it is for, and reads status and metrics; the parts below
 * it, and what each may call, are listed in fleet_internal.h.
 *
 * The hold and its release are told on the peer port (fleet_direct.h),
 * one message per proxy and event; the NOTIFY is the fallback for those
 * it does not reach. Everything a decision rests on is still in the
 * database: every acknowledgement in its proxy's row (written by the
 * participant, or by the contract for one said on the peer port), the
 * hold's row and its lock. */
#include "fleet.h"
#include "fleet_internal.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "fleet_direct.h"
#include "fleet_lease.h"
#include "fleet_sql.h"
#include "log.h"
#include "relay_control.h"

const char *fleet_id(const struct fleet *f)
{
    return f->id;
}

int fleet_slot(const struct fleet *f)
{
    return f->slot;
}

int fleet_lease_ms(const struct fleet *f)
{
    return f->lease_ms;
}

/* ---- what the other proxies say ---- */

static void on_fleet_message(struct fleet *f, const char *payload)
{
    long long epoch = 0;
    int a = 0, b = 0;
    char who[96] = "";
    if (sscanf(payload, "hold %lld %d %d %95s", &epoch, &a, &b, who) == 4) {
        if (strcmp(who, f->id) != 0)
            fleet_participant_begin(f, epoch, a, b, 0, who, FLEET_VIA_DATABASE);
    } else if (sscanf(payload, "ack %lld %95s", &epoch, who) == 2) {
        if (f->co.active && epoch == f->co.epoch)
            fleet_count_ack(f, who, FLEET_VIA_DATABASE, NULL);
    } else if (sscanf(payload, "release %lld %d", &epoch, &a) == 2) {
        if (f->part.active && epoch == f->part.epoch)
            fleet_participant_finish(f, a == 1, FLEET_VIA_DATABASE);
    }
}

static void on_notify(void *ctx, const char *channel, const char *payload)
{
    struct fleet *f = ctx;
    if (!strcmp(channel, FLEET_CHANNEL_FLEET)) {
        on_fleet_message(f, payload);
        return;
    }
    char name[128] = "", status[32] = "";
    if (!strcmp(channel, FLEET_CHANNEL_MIGRATIONS) && sscanf(payload, "%127s %31s", name, status) == 2)
        fleet_learn_migration(f, name, status, clock_now_ms());
}

/* Peer messages (fleet_direct.h) that verified. */
static void direct_hold(void *ctx, long long epoch, int drain_ms, int hold_ms, const char *coordinator)
{
    struct fleet *f = ctx;
    if (strcmp(coordinator, f->id) != 0)
        fleet_participant_begin(f, epoch, drain_ms, hold_ms, 0, coordinator, FLEET_VIA_PEER);
}

static void direct_release(void *ctx, long long epoch, int committed)
{
    struct fleet *f = ctx;
    if (f->part.active && epoch == f->part.epoch)
        fleet_participant_finish(f, committed, FLEET_VIA_PEER);
}

static void direct_held(void *ctx, long long epoch, const char *participant, const char *pids)
{
    struct fleet *f = ctx;
    if (f->co.active && epoch == f->co.epoch)
        fleet_count_ack(f, participant, FLEET_VIA_PEER, pids);
}

static void direct_lost(void *ctx, long long epoch, const char *participant)
{
    fleet_coordinator_lost(ctx, epoch, participant);
}

static void direct_part_lost(void *ctx, long long epoch)
{
    fleet_participant_channel_lost(ctx, epoch);
}

/* ---- leaving ---- */

static void on_left(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    struct fleet *f = ctx;
    if (!fleet_failed(f, "leaving the fleet", error, sqlstate))
        log_info("fleet: %s left the fleet", f->id);
}

static int send_leave(struct fleet *f)
{
    return fleet_send_sql(f, FLEET_LEAVE_SQL, 1, (const char *[]){f->id}, on_left);
}

void fleet_leave(struct fleet *f)
{
    evtimer_del(f->heartbeat_timer);
    f->jobs &= ~((1u << FLEET_JOB_LEASE) | (1u << FLEET_JOB_HEARTBEAT));
    fleet_want(f, FLEET_JOB_LEAVE);
}

/* ---- what the connection needs from the parts above it ---- */

/* The connection is gone (fleet_conn.c): a coordinator waiting for
 * acknowledgements gives up. A participant keeps holding until its
 * deadline: it cannot know yet whether the contract committed. */
static void on_link_lost(struct fleet *f)
{
    if (f->co.active)
        fleet_coordinator_finish(f, 0, "the fleet's connection to the database was lost");
}

/* Who sends each job's statement, by enum fleet_job (most urgent first). */
static const fleet_send_fn senders[FLEET_NJOBS] = {
    [FLEET_JOB_LEAVE] = send_leave,
    [FLEET_JOB_RELEASE] = fleet_send_release,
    [FLEET_JOB_ABANDON] = fleet_send_abandon,
    [FLEET_JOB_ACK] = fleet_send_ack,
    [FLEET_JOB_HOLD] = fleet_send_hold,
    [FLEET_JOB_HOLD_NOTIFY] = fleet_send_hold_notify,
    [FLEET_JOB_HOLD_LOOK] = fleet_send_hold_look,
    [FLEET_JOB_NEWS] = fleet_send_news,
    [FLEET_JOB_LEASE] = fleet_send_lease,
    [FLEET_JOB_ACK_CHECK] = fleet_send_ack_check,
    [FLEET_JOB_READ] = fleet_send_read,
    [FLEET_JOB_HEARTBEAT] = fleet_send_heartbeat,
};

/* ---- status and lifecycle ---- */

static json_t *by_via(const unsigned long long n[FLEET_NVIA])
{
    return json_pack("{s:I,s:I,s:I}", fleet_via_name(FLEET_VIA_DATABASE), (json_int_t)n[FLEET_VIA_DATABASE],
                     fleet_via_name(FLEET_VIA_PEER), (json_int_t)n[FLEET_VIA_PEER], fleet_via_name(FLEET_VIA_SELF),
                     (json_int_t)n[FLEET_VIA_SELF]);
}

json_t *fleet_status_json(const struct fleet *f)
{
    json_t *o = json_pack("{s:s,s:i,s:i,s:b,s:O,s:O}", "id", f->id, "slot", f->slot, "lease_ms", f->lease_ms,
                          "connected", f->link == FLEET_LINK_UP, "members", f->members, "bypassing", f->bypassing);
    struct fleet_direct_counts dc = {0, 0, 0};
    if (f->direct)
        fleet_direct_counts(f->direct, &dc);
    json_t *direct = json_pack("{s:b,s:I,s:I,s:I}", "enabled", f->direct && relay_peer_address(f->relay)[0],
                               "asked", (json_int_t)dc.asked, "refused", (json_int_t)dc.refused, "failed",
                               (json_int_t)dc.failed);
    json_t *holds = json_pack("{s:o,s:o,s:I,s:o}", "learned", by_via(f->holds_learned), "released",
                              by_via(f->holds_released), "unconfirmed", (json_int_t)f->holds_unconfirmed,
                              "acks_received", by_via(f->acks));
    json_t *last = f->last.epoch ? json_pack("{s:I,s:s,s:s,s:b,s:b,s:f}", "epoch", (json_int_t)f->last.epoch,
                                             "learned", fleet_via_name(f->last.learned), "released",
                                             fleet_via_name(f->last.released), "committed", f->last.committed,
                                             "confirmed", f->last.confirmed, "held_ms", f->last.held_ms)
                                 : json_null();
    if (o) {
        json_object_set_new(o, "direct", direct ? direct : json_null());
        json_object_set_new(o, "holds", holds ? holds : json_null());
        json_object_set_new(o, "last_hold", last ? last : json_null());
    } else {
        json_decref(direct);
        json_decref(holds);
        json_decref(last);
    }
    return o;
}

void fleet_metrics(const struct fleet *f, struct fleet_metrics *out)
{
    uint64_t now = fleet_now_us();
    out->connected = f->link == FLEET_LINK_UP;
    out->lease_s = f->lease_ms / 1000.0;
    out->lease_age_s = f->renewed_us && now >= f->renewed_us ? (double)(now - f->renewed_us) / 1e6 : -1;
    out->heartbeat_failures = f->heartbeat_failures;
    size_t i;
    json_t *m;
    out->members = 0;
    json_array_foreach(f->members, i, m) { /* dead rows stay listed until cleaned up */
        out->members += json_is_true(json_object_get(m, "live"));
    }
    out->bypassing = json_is_array(f->bypassing) ? json_array_size(f->bypassing) : 0;
    memcpy(out->holds_learned, f->holds_learned, sizeof out->holds_learned);
    memcpy(out->holds_released, f->holds_released, sizeof out->holds_released);
    memcpy(out->acks, f->acks, sizeof out->acks);
    out->holds_unconfirmed = f->holds_unconfirmed;
    struct fleet_direct_counts dc = {0, 0, 0};
    if (f->direct)
        fleet_direct_counts(f->direct, &dc);
    out->peer_asked = dc.asked;
    out->peer_refused = dc.refused;
    out->peer_failed = dc.failed;
}

void fleet_observe(struct fleet *f, fleet_migration_fn fn, fleet_looked_fn looked, void *ctx)
{
    f->on_migration = fn;
    f->on_looked = looked;
    f->on_migration_ctx = ctx;
}

/* host-pid-random: unique across restarts, readable in the table. */
static void make_id(struct fleet *f, const char *id)
{
    if (gethostname(f->host, sizeof f->host - 1) != 0)
        snprintf(f->host, sizeof f->host, "localhost");
    if (id && id[0]) {
        snprintf(f->id, sizeof f->id, "%s", id);
        return;
    }
    /* in a container the pid is always 1 and a restarted one keeps its host
     * name: 48 random bits keep a new process from taking the row (and the
     * held epoch) of the one it replaced */
    unsigned char r[6] = {0};
    if (RAND_bytes(r, sizeof r) != 1) {
        uint64_t t = fleet_now_us();
        memcpy(r, &t, sizeof r);
    }
    snprintf(f->id, sizeof f->id, "%.60s-%d-%02x%02x%02x%02x%02x%02x", f->host, (int)getpid(), r[0], r[1], r[2],
             r[3], r[4], r[5]);
}

struct fleet *fleet_new(struct event_base *base, struct relay *relay, const struct fleet_options *opt)
{
    struct fleet *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->base = base;
    f->relay = relay;
    pgasync_init(&f->db, base);
    pgasync_set_label(&f->db, "fleet");
    f->db.on_notify = on_notify;
    f->db.notify_ctx = f;
    f->senders = senders;
    f->on_link_lost = on_link_lost;
    f->engine_db = strdup(opt->engine_db);
    f->lease_ms = opt->lease_ms;
    f->heartbeat_answered_ok = 1;
    f->heartbeat_ms = fleet_heartbeat_interval_ms(opt->lease_ms);
    relay_set_fence_bound(relay, fleet_fence_bound_ms(opt->lease_ms));
    make_id(f, opt->id);
    static const struct fleet_direct_handlers direct = {direct_hold, direct_held, direct_release, direct_lost,
                                                        direct_part_lost};
    f->direct = fleet_direct_new(relay, f->id, &direct, f);
    if (!f->direct)
        log_warn("fleet: no key for peer messages (out of memory or randomness); holds are told through the"
                 " database only");
    snprintf(f->listen, sizeof f->listen, "%s", opt->listen ? opt->listen : "");
    snprintf(f->admin, sizeof f->admin, "%s", opt->admin ? opt->admin : "");
    f->members = json_array();
    f->bypassing = json_array();
    f->heartbeat_timer = evtimer_new(base, fleet_heartbeat_cb, f);
    f->reconnect_timer = evtimer_new(base, fleet_reconnect_cb, f);
    f->co.timeout = evtimer_new(base, fleet_coordinator_timeout_cb, f);
    f->co.recheck = evtimer_new(base, fleet_coordinator_recheck_cb, f);
    f->part.deadline = evtimer_new(base, fleet_participant_deadline_cb, f);
    f->part.look = evtimer_new(base, fleet_participant_look_cb, f);
    if (!f->engine_db || !f->heartbeat_timer || !f->reconnect_timer || !f->co.timeout || !f->co.recheck ||
        !f->part.deadline || !f->part.look) {
        fleet_free(f);
        return NULL;
    }
    fleet_add_timer(f->heartbeat_timer, f->heartbeat_ms);
    fleet_connect(f);
    return f;
}

void fleet_free(struct fleet *f)
{
    if (!f)
        return;
    if (f->part.active)
        fleet_participant_finish(f, 0, FLEET_VIA_SELF);
    fleet_direct_free(f->direct);
    pgasync_close(&f->db);
    struct event *timers[] = {f->heartbeat_timer, f->reconnect_timer, f->co.timeout, f->co.recheck,
                              f->part.deadline, f->part.look};
    for (size_t i = 0; i < sizeof timers / sizeof timers[0]; i++)
        if (timers[i])
            event_free(timers[i]);
    json_decref(f->members);
    json_decref(f->bypassing);
    json_decref(f->co.expected);
    json_decref(f->co.peer_acks);
    fleet_reads_free(f);
    free(f->heartbeat_pids);
    free(f->heartbeat_pids_sent);
    free(f->engine_db);
    free(f);
}

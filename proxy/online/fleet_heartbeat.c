/* The fleet's heartbeat (fleet_internal.h): the lease renewed several
 * times per lease by a statement that touches nothing else, and applied
 * to the relay (the fence: fleet_lease.h's arithmetic); then the
 * bookkeeping that writes what this proxy serves and reads the fleet, the
 * most recent migration and the newest hold. A hold open in the table is
 * joined, and a release whose notice was lost ends the one served
 * (fleet_participant.c, below this file). */
#include "fleet_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "fleet_lease.h"
#include "fleet_sql.h"
#include "log.h"
#include "migration_lifecycle.h"
#include "migration_state.h"
#include "relay_control.h"

static void set_json(json_t **slot, const char *text)
{
    json_t *v = json_loads(text, 0, NULL);
    json_decref(*slot);
    *slot = v ? v : json_array();
}

/* The relay fences itself once the lease may have run out in the
 * database's eyes: the lease counts from before its renewal was sent.
 * Only while a migration is in progress, switched included (the reason
 * is with mig_status_in_progress): with none, no cutover can run without
 * this proxy. */
static void apply_lease(struct fleet *f)
{
    int fence = f->migration[0] && mig_word_in_progress(f->status);
    if (f->renewed_us)
        relay_set_lease(f->relay, fleet_lease_deadline_us(f->renewed_us, f->lease_ms, fence));
}

void fleet_learn_migration(struct fleet *f, const char *name, const char *status, double asked_ms)
{
    snprintf(f->migration, sizeof f->migration, "%s", name);
    snprintf(f->status, sizeof f->status, "%s", status);
    if (f->on_migration && name[0])
        f->on_migration(f->on_migration_ctx, name, status, asked_ms);
}

/* A hold that is open and young enough is joined: a proxy that started or
 * came back during a cutover must hold too. */
enum { HB_ALIVE, HB_MEMBERS, HB_BYPASSING, HB_NAME, HB_STATUS, HB_EPOCH, HB_COORDINATOR, HB_DRAIN_MS,
       HB_HOLD_MS, HB_AGE_MS, HB_RELEASED, HB_COMMITTED, HB_COORDINATOR_LIVE, HB_IN_FLIGHT, HB_WROTE, HB_NFIELDS };

/* The hold being served, as the table has it now: a release whose notice
 * was lost ends it; so does a coordinator whose lease ran out (it died
 * mid-contract): nobody would release it, and its contract cannot commit
 * once the hold is closed, so the hold ends within the coordinator's
 * lease instead of lasting drain + lock_timeout. */
static void check_served_hold(struct fleet *f, PGresult *res)
{
    if (!f->part.active || PQgetisnull(res, 0, HB_EPOCH) || atoll(PQgetvalue(res, 0, HB_EPOCH)) != f->part.epoch)
        return;
    if (!strcmp(PQgetvalue(res, 0, HB_RELEASED), "t")) {
        fleet_participant_finish(f, !strcmp(PQgetvalue(res, 0, HB_COMMITTED), "t"), FLEET_VIA_DATABASE);
        return;
    }
    if (!strcmp(PQgetvalue(res, 0, HB_COORDINATOR_LIVE), "t") || f->part.abandoning)
        return;
    log_warn("fleet: hold %lld: the coordinator %s is out of the fleet (its lease ran out); closing the hold",
             f->part.epoch, f->part.coordinator);
    f->part.abandoning = 1;
    fleet_want(f, FLEET_JOB_ABANDON);
}

static void learn_hold(struct fleet *f, PGresult *res)
{
    if (PQgetisnull(res, 0, HB_EPOCH) || !strcmp(PQgetvalue(res, 0, HB_RELEASED), "t"))
        return;
    long long epoch = atoll(PQgetvalue(res, 0, HB_EPOCH));
    long long age = atoll(PQgetvalue(res, 0, HB_AGE_MS));
    int hold_ms = atoi(PQgetvalue(res, 0, HB_HOLD_MS));
    const char *coordinator = PQgetvalue(res, 0, HB_COORDINATOR);
    /* A hold whose coordinator is gone is not joined: nobody will release it. */
    if (strcmp(coordinator, f->id) != 0 && age < hold_ms && !strcmp(PQgetvalue(res, 0, HB_COORDINATOR_LIVE), "t"))
        fleet_participant_begin(f, epoch, atoi(PQgetvalue(res, 0, HB_DRAIN_MS)), hold_ms, age, coordinator,
                                FLEET_VIA_DATABASE);
}

/* The other live proxies' peer listeners, so a CancelRequest for one of
 * their sessions that reaches us is sent on. */
static void share_peers(struct fleet *f)
{
    struct relay_peer peers[FLEET_MAX_SLOT];
    size_t n = 0, i;
    json_t *m;
    json_array_foreach(f->members, i, m) {
        const char *peer = json_string_value(json_object_get(m, "peer"));
        const char *id = json_string_value(json_object_get(m, "id"));
        int slot = (int)json_integer_value(json_object_get(m, "slot"));
        if (n == FLEET_MAX_SLOT || !peer || !id || !strcmp(id, f->id) || !json_is_true(json_object_get(m, "live")) ||
            slot < 1 || slot > FLEET_MAX_SLOT)
            continue;
        peers[n].slot = slot;
        snprintf(peers[n].address, sizeof peers[n].address, "%s", peer);
        n++;
    }
    relay_set_fleet_peers(f->relay, peers, n);
}

/* Two registrations that run at once can both take the same free slot:
 * neither sees the other's row before it commits. Left so, a cancel for
 * one's session that reaches the other is taken for its own and dropped.
 * The proxy with the greater id registers again, which moves it to a slot
 * no other live proxy holds; one moves, so the two cannot chase each other. */
static int slot_taken_by_another(const struct fleet *f)
{
    size_t i;
    json_t *m;
    if (f->slot < 1 || f->slot > FLEET_MAX_SLOT)
        return 0;
    json_array_foreach(f->members, i, m) {
        const char *id = json_string_value(json_object_get(m, "id"));
        if (id && strcmp(id, f->id) < 0 && json_is_true(json_object_get(m, "live")) &&
            json_integer_value(json_object_get(m, "slot")) == f->slot) {
            log_warn("fleet: slot %d is also held by %s; registering again for another", f->slot, id);
            return 1;
        }
    }
    return 0;
}

static void on_refreshed(void *ctx, int drained, uint64_t waited_us)
{
    (void)waited_us;
    struct fleet *f = ctx;
    int n = drained ? relay_reprepare(f->relay) : 0;
    if (drained)
        relay_release(f->relay, NULL);
    log_info("fleet: lease renewed after the migration completed without us; %d statements prepared again", n);
}

/* This proxy was out of the fleet (stopped, cut off) while the contract
 * ran: its sessions wait at their boundaries (the fence), and their
 * statements, prepared against the old shape, are prepared again before
 * the fence lifts. */
static void refresh_after_fence(struct fleet *f)
{
    log_warn("fleet: the migration completed while this proxy's lease had run out; preparing statements again");
    if (relay_hold(f->relay, "refresh", "preparing statements again after a contract that ran without this proxy",
                   f->lease_ms, on_refreshed, f) != 0)
        log_error("fleet: cannot hold traffic to prepare statements again");
}

/* A renewal answered: the lease counts from when it was sent. A fence
 * that is up stays up until the bookkeeping after it has said what
 * happened meanwhile (a contract that ran without us: refresh_after_fence). */
static void on_lease(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    struct fleet *f = ctx;
    f->heartbeat_answered_ok = !error;
    if (error) {
        char why[192];
        snprintf(why, sizeof why, "the lease's renewal fails: %s", error);
        relay_set_fence_why(f->relay, why);
    }
    if (fleet_failed(f, "renewing the lease", error, sqlstate))
        return;
    f->renewed_us = f->lease_sent_us;
    relay_set_fence_why(f->relay, "");
    if (!relay_lease_expired(f->relay))
        apply_lease(f);
}

static void on_heartbeat(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    struct fleet *f = ctx;
    if (error && relay_lease_expired(f->relay)) { /* the fence waits for this answer */
        char why[192];
        snprintf(why, sizeof why, "the heartbeat fails: %s", error);
        relay_set_fence_why(f->relay, why);
    }
    if (fleet_failed(f, "heartbeat", error, sqlstate))
        return;
    if (!res || PQntuples(res) != 1 || PQnfields(res) != HB_NFIELDS) {
        fleet_link_lost(f, "unexpected heartbeat answer");
        return;
    }
    if (atoi(PQgetvalue(res, 0, HB_ALIVE)) == 0) { /* dropped as dead while we were away */
        log_warn("fleet: this proxy's row was dropped; registering again");
        fleet_register(f);
        return;
    }
    /* the PIDs our row holds now, when this heartbeat wrote it (a "held"
     * with these says "="); not known when it was skipped */
    char *sent = f->heartbeat_pids_sent;
    f->heartbeat_pids_sent = NULL;
    free(f->heartbeat_pids);
    f->heartbeat_pids = !strcmp(PQgetvalue(res, 0, HB_WROTE), "t") ? sent : NULL;
    if (!f->heartbeat_pids)
        free(sent);
    set_json(&f->members, PQgetvalue(res, 0, HB_MEMBERS));
    if (slot_taken_by_another(f)) {
        fleet_register(f);
        return;
    }
    share_peers(f);
    set_json(&f->bypassing, PQgetvalue(res, 0, HB_BYPASSING));
    int fenced = relay_lease_expired(f->relay);
    char before[sizeof f->status];
    snprintf(before, sizeof before, "%s", f->status);
    fleet_learn_migration(f, PQgetvalue(res, 0, HB_NAME), PQgetvalue(res, 0, HB_STATUS), f->heartbeat_sent_ms);
    if (f->on_looked)
        f->on_looked(f->on_migration_ctx, f->look, PQgetvalue(res, 0, HB_NAME), PQgetvalue(res, 0, HB_IN_FLIGHT));
    else
        relay_version_look_applied(f->relay, f->look);
    if (fenced && strcmp(before, f->status) != 0 && mig_status_of_word(f->status) == MIG_ST_COMPLETED)
        refresh_after_fence(f);
    check_served_hold(f, res);
    learn_hold(f, res);
    apply_lease(f);
}

int fleet_send_lease(struct fleet *f)
{
    f->lease_sent_us = fleet_now_us();
    return fleet_send_sql(f, FLEET_LEASE_SQL, 1, (const char *[]){f->id}, on_lease);
}

int fleet_send_heartbeat(struct fleet *f)
{
    json_t *counts = relay_version_counts(f->relay);
    char *sessions = json_dumps(counts, JSON_COMPACT);
    json_decref(counts);
    char *pids = fleet_pids_text(f);
    char lease[16];
    snprintf(lease, sizeof lease, "%d", f->lease_ms);
    char in_flight[MIG_STATUS_SQL_LIST_MAX];
    mig_status_array_literal(MIG_SET_IN_PROGRESS, in_flight, sizeof in_flight);
    json_t *names = relay_routed_names(f->relay);
    char *routes = json_dumps(names, JSON_COMPACT);
    json_decref(names);
    const char *values[6] = {f->id, sessions ? sessions : "{}", pids ? pids : "[]", lease, in_flight,
                             routes ? routes : "[]"};
    f->look = relay_version_look_started(f->relay);
    f->heartbeat_sent_ms = clock_now_ms();
    int rc = fleet_send_sql(f, FLEET_HEARTBEAT_SQL, 6, values, on_heartbeat);
    free(routes);
    free(sessions);
    /* what our row will say once the answer says it was written */
    free(f->heartbeat_pids_sent);
    f->heartbeat_pids_sent = rc == 0 ? pids : NULL;
    if (rc != 0)
        free(pids);
    return rc;
}

void fleet_heartbeat_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fleet *f = arg;
    /* due, and nothing to send it on, or the last one unanswered or
     * answered with an error: one failure per heartbeat, counted here */
    if (f->link != FLEET_LINK_UP || f->handler == on_lease || (f->jobs & (1u << FLEET_JOB_LEASE)) ||
        !f->heartbeat_answered_ok)
        f->heartbeat_failures++;
    f->heartbeat_answered_ok = 1; /* the next one is judged on its own answer */
    if (f->link == FLEET_LINK_UP && !(f->jobs & (1u << FLEET_JOB_LEAVE))) {
        f->jobs |= 1u << FLEET_JOB_LEASE;
        fleet_want(f, FLEET_JOB_HEARTBEAT);
    }
    uint64_t now = fleet_now_us();
    uint64_t waited_us = now - f->lease_sent_us;
    if (f->handler == on_lease && fleet_heartbeat_late(now, f->lease_sent_us, f->heartbeat_ms)) {
        char why[192]; /* a lock on pgtandem.fleet_leases, a database that hangs */
        snprintf(why, sizeof why, "the lease's renewal has had no answer for %.1f s", (double)waited_us / 1e6);
        relay_set_fence_why(f->relay, why);
    }
    fleet_add_timer(f->heartbeat_timer, f->heartbeat_ms);
}

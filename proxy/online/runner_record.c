/* The migration this runner knows, as the database records it: its
 * name, the state row read back (a restart, another proxy's news, a
 * COMMIT whose answer was lost) and what it says the runner's phase is,
 * and the following of a migration another proxy of the fleet works on,
 * with the takeover of its expand or backfill when that one is gone. The
 * phase the record says goes up to the runner (RUNNER_EV_RECORD), which
 * moves there as the lifecycle allows for a status read back. */
#include "runner_internal.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "fleet.h"
#include "log.h"
#include "migration_names.h"
#include "migration_state.h"
#include "relay_control.h"
#include "version_route.h"

void runner_set_name(struct migration_runner *r, const char *name)
{
    free(r->name);
    r->name = strdup(name);
    r->bfr.progress.migration = r->name; /* tags the backfill's lines in the log */
    engine_worker_set_target(&r->worker, name);
    /* the schemas' names as they are, quoted by the sessions routed to them */
    mig_version_schema(name, r->version_schema, sizeof r->version_schema);
    mig_old_schema(name, r->old_schema, sizeof r->old_schema);
}

/* A batch aims at target_ms (tens of ms); a slow one runs into seconds. */
static const double batch_bounds_s[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

void runner_reset_metrics(struct migration_runner *r)
{
    histogram_init(&r->batch_seconds, batch_bounds_s, (int)(sizeof batch_bounds_s / sizeof batch_bounds_s[0]));
    cutover_totals_reset(&r->cut.totals);
}

void runner_reset_migration(struct migration_runner *r)
{
    bf_runner_reset(&r->bfr);
    if (r->have_plan)
        mig_plan_free(&r->plan);
    if (r->have_mig)
        mig_free(&r->mig);
    r->have_plan = r->have_mig = 0;
    r->error[0] = '\0';
    cutover_abort(&r->cut);
    runner_reset_metrics(r);
    r->have_cut_rep = 0;
    r->stop_backfill = 0;
    r->rollback_asked = 0;
    settings_throttle_defaults(&r->thr);
    r->throttle_dirty = 0;
    r->table_status[0] = '\0';
    r->conn.lock_tries = r->conn.reconnects = 0;
    r->step_status = 0;
    r->post.left = r->post.tries = 0;
}

static void failed(struct migration_runner *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void failed(struct migration_runner *r, const char *fmt, ...)
{
    char msg[sizeof r->error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    runner_report(r, RUNNER_EV_STEP_FAILED, msg, NULL);
}

/* The runner moves to phase p, read from the table (post_left: a
 * completed one's steps after the contract are left). */
static void record_says_with(struct migration_runner *r, enum mig_phase p, int post_left)
{
    struct runner_news n = {.phase = p, .post_left = post_left};
    r->report(r, RUNNER_EV_RECORD, &n);
}

static void record_says(struct migration_runner *r, enum mig_phase p)
{
    record_says_with(r, p, 0);
}

/* ---- the state row ---- */

static int parse_state(struct migration_runner *r, PGresult *res)
{
    char err[1024];
    const char *json = PQgetvalue(res, 0, 2);
    if (!r->have_mig) {
        if (mig_parse(json, strlen(json), r->name, &r->mig, err, sizeof err) != 0) {
            runner_report(r, RUNNER_EV_STEP_FAILED, err, NULL);
            return -1;
        }
        r->have_mig = 1;
    }
    backfill_restore_throttle(r, PQgetisnull(res, 0, 3) ? NULL : PQgetvalue(res, 0, 3));
    r->recorded_rows = atoll(PQgetvalue(res, 0, 5));
    r->record_age_ms = PQnfields(res) > 7 && !PQgetisnull(res, 0, 7) ? atoll(PQgetvalue(res, 0, 7)) : 0;
    if (r->have_plan)
        mig_plan_free(&r->plan);
    r->have_plan = !PQgetisnull(res, 0, 0) && mig_plan_from_json(PQgetvalue(res, 0, 0), &r->plan, err, sizeof err) == 0;
    if (!r->have_plan) {
        failed(r, "the stored plan cannot be read: %s", err);
        return -1;
    }
    return 0;
}

/* A follower takes the expand or the backfill over only once it has seen
 * it run elsewhere for two leases: the engine that expanded takes the lock
 * within milliseconds, and must not lose it to a follower. */
static int takeover_due(struct migration_runner *r)
{
    if (r->takeover_at_once)
        return 1;
    double lease = runner_lease_ms(r);
    if (r->follow_since_ms == 0)
        r->follow_since_ms = clock_now_ms();
    return clock_now_ms() - r->follow_since_ms >= 2 * lease;
}

/* A backfill is taken over only once its status is two leases old too: at
 * the expand's end the status changes, the engine that expanded lets go of
 * the lock and its backfill takes it a moment later, and every follower
 * hears of the change (and tries the lock) right in that moment. A backfill
 * whose engine is gone leaves the status as it was: it ages. */
static int backfill_takeover_due(struct migration_runner *r)
{
    return takeover_due(r) && (r->takeover_at_once || (double)r->record_age_ms >= 2 * runner_lease_ms(r));
}

/* The state row is the truth: whatever happened while nobody watched
 * (a contract that committed, a rollback from the CLI) is what we report. */
void record_read(struct migration_runner *r, PGresult *res, const char *error, const char *sqlstate)
{
    if (error && connection_lost(sqlstate)) {
        runner_report(r, RUNNER_EV_CONNECTION_LOST, error, sqlstate);
        return;
    }
    /* Sent before a step that owns the row began (a rollback asked for
     * while the fleet's news was being read), or read during this proxy's
     * own expand (a start, a resubmission after a failure, a redo), while
     * the table still says what it said before: the step's own end says
     * what follows. */
    if (mig_phase_owns_record(r->phase) || (r->phase == MIG_PH_EXPANDING && !r->following)) {
        log_debug("migration %s: a read of its state sent before %s ignored", r->name ? r->name : "-",
                  mig_phase_word(r->phase));
        return;
    }
    if (error || !res || PQntuples(res) != 1) {
        r->table_status[0] = '\0'; /* the next poll reads it again */
        failed(r, "reading pgtandem.migrations: %s", error ? error : "migration not recorded");
        return;
    }
    if (parse_state(r, res) != 0) {
        r->table_status[0] = '\0';
        return;
    }
    const char *status = PQgetvalue(res, 0, 1);
    int st = mig_status_of_word(status);
    snprintf(r->table_status, sizeof r->table_status, "%s", status);
    if (st < 0) {
        failed(r, "pgtandem.migrations says %s is \"%.40s\", which is no status this proxy knows", r->name, status);
    } else if (st == MIG_ST_FAILED) {
        snprintf(r->error, sizeof r->error, "%s", PQgetisnull(res, 0, 4) ? status : PQgetvalue(res, 0, 4));
        record_says(r, MIG_PH_FAILED);
    } else if (st == MIG_ST_EXPANDING && r->following) {
        /* another engine expands; its next status comes by notification.
         * It holds the engine lock until then: a lock that is free means
         * that engine is gone, and the expand is this proxy's to redo. */
        record_says(r, MIG_PH_EXPANDING);
        if (takeover_due(r))
            take_engine_lock(r);
    } else if (st == MIG_ST_EXPANDING) {
        failed(r, "the expand of %s did not finish (its process was interrupted); start it again or roll it back",
             r->name);
    } else if (st == MIG_ST_BACKFILLING) {
        record_says(r, MIG_PH_BACKFILLING);
        if (!r->following || backfill_takeover_due(r))
            take_engine_lock(r);
    } else {
        record_says_with(r, mig_phase_of_status((enum mig_status)st),
                         st == MIG_ST_COMPLETED && PQnfields(res) > 6 && PQgetvalue(res, 0, 6)[0] == 't');
    }
}


/* A look of the fleet's that found news waited for this load: what it
 * found is in place now (the route pushed, see route_for). */
static void look_applied_after_load(struct migration_runner *r)
{
    uint64_t look = r->look_after_load;
    r->look_after_load = 0;
    if (look)
        relay_version_look_applied(r->relay, look);
}

static void on_state_row(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    struct migration_runner *r = ctx;
    r->state_loading = error != NULL; /* unanswered: made again (the health tick), the looks wait for it */
    record_read(ctx, res, error, sqlstate);
    if (!r->state_loading)
        look_applied_after_load(r);
}

void send_load_state(struct migration_runner *r)
{
    const char *values[1] = {r->name};
    r->state_loading = 1;
    if (pgasync_send(&r->db, MIG_STATE_LOAD_SQL, 1, values, on_state_row, r) != 0)
        runner_report(r, RUNNER_EV_CONNECTION_LOST, r->db.error, r->db.sqlstate);
}

/* The state row read on the fleet's connection: a transient error
 * leaves the load asked for (the health tick asks again). */
static void on_state_row_by_fleet(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    struct migration_runner *r = ctx;
    if (r->state_by_fleet > 0)
        r->state_by_fleet--;
    if (error && connection_lost(sqlstate)) {
        log_debug("migration %s: the fleet's read of its state failed (%s); read again later", r->name, error);
        return;
    }
    on_state_row(ctx, res, error, sqlstate);
}

void load_state(struct migration_runner *r)
{
    /* loading from here: a look answered meanwhile waits for the route */
    r->state_loading = 1;
    /* A follower whose engine connection closed while idle reads the news
     * on the fleet's connection: 64 followers reopening theirs at each
     * piece of news held 2N backends for seconds. */
    if (runner_reads_by_fleet(r)) {
        const char *values[1] = {r->name};
        int rc = fleet_read(r->fleet, MIG_STATE_LOAD_SQL, 1, values, on_state_row_by_fleet, r);
        if (rc >= 0) {
            r->state_by_fleet += rc == 0; /* a queued one replaced: one answer for both */
            return;
        }
    }
    with_connection(r, send_load_state);
}

/* ---- following the fleet ---- */

static void remember_latest(char latest[2][128], const char *name, const char *status)
{
    snprintf(latest[0], sizeof latest[0], "%s", name);
    snprintf(latest[1], sizeof latest[1], "%s", status);
}

static int is_latest(char latest[2][128], const char *name, const char *status)
{
    return latest[0][0] && !strcmp(latest[0], name) && !strcmp(latest[1], status);
}

void record_own_start(struct migration_runner *r)
{
    memcpy(r->before_start, r->fleet_latest, sizeof r->before_start);
}

/* The names the table has that are not in flight, newest first: sessions
 * that declare one of them need not wait for the fleet's next look
 * (version_gate.c). Not the one followed, nor one in flight: its shape is
 * served once its route is pushed (route_for, or the fleet's look:
 * route_flight); known before, a new-release session would pass the gate
 * in between and read the old shape. */
static void know_names(struct migration_runner *r, const char *json_names, const char *latest)
{
    json_t *names = json_loads(json_names, 0, NULL);
    size_t i;
    json_t *n;
    json_array_foreach(names, i, n) {
        const char *name = json_string_value(n);
        if (name && strcmp(name, latest) != 0)
            relay_version_known(r->relay, name);
    }
    json_decref(names);
}

static void on_latest(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)sqlstate;
    struct migration_runner *r = ctx;
    if (error || !res || PQntuples(res) != 1)
        return; /* no state schema yet, or no migration ever */
    if (PQnfields(res) > 2 && !PQgetisnull(res, 0, 2))
        know_names(r, PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 0));
    if (r->name) /* the fleet got there first */
        return;
    runner_set_name(r, PQgetvalue(res, 0, 0));
    remember_latest(r->fleet_latest, r->name, PQgetvalue(res, 0, 1));
    r->following = 1;
    r->takeover_at_once = 1; /* a restart: no expand of ours is about to take the lock */
    log_info("migration %s is %s in the database; following it", r->name, PQgetvalue(res, 0, 1));
    send_load_state(r);
}

static void find_latest(struct migration_runner *r)
{
    char in_flight[MIG_STATUS_SQL_LIST_MAX];
    mig_status_array_literal(MIG_SET_IN_PROGRESS, in_flight, sizeof in_flight);
    const char *values[1] = {in_flight};
    if (pgasync_send(&r->db, MIG_STATE_LATEST_SQL, 1, values, on_latest, r) != 0)
        log_warn("migration state: %s", r->db.error);
}

/* This proxy is doing the migration's work (a worker step, a batch, the lock, a
 * cutover, a request waiting): what the table says is its own doing. */
int record_working_locally(const struct migration_runner *r)
{
    return engine_worker_running(&r->worker) || r->phase == MIG_PH_COMPLETING || r->phase == MIG_PH_ROLLING_BACK ||
           r->holds_lock || r->db.busy || r->db.connecting || r->conn.after_connect || r->conn.after_unlock ||
           conn_waiting(r) || timer_armed(r) || r->stop_backfill || r->complete_w.fn || r->rollback_w.fn || r->rollback_asked ||
           bf_runner_active(&r->bfr) || (r->phase == MIG_PH_EXPANDING && !r->following);
}

void record_route_schemas(enum mig_phase p, enum mig_phase cut_from, const char *version_schema,
                          const char *old_schema, const char **new_out, const char **old_out)
{
    enum mig_shape n, o;
    mig_routes(p, cut_from, &n, &o);
    const char *schema[] = {[MIG_SHAPE_NONE] = NULL, [MIG_SHAPE_OLD] = old_schema, [MIG_SHAPE_NEW] = version_schema};
    *old_out = schema[o];
    *new_out = o != MIG_SHAPE_NONE && n != o ? schema[n] : NULL;
}

/* The route of a migration in flight that another engine runs, from its
 * status alone (such a migration is never switched: a revert window needs
 * a proxy's engine); old_schema NULL when its status routes nobody. */
static void flight_route_of(const char *name, const char *status, char version_schema[96], char old_schema[96],
                            struct flight_route *out)
{
    mig_version_schema(name, version_schema, 96);
    mig_old_schema(name, old_schema, 96);
    out->version = name;
    record_route_schemas(mig_phase_of_status((enum mig_status)mig_status_of_word(status)), MIG_PH_IDLE,
                         version_schema, old_schema, &out->new_schema, &out->old_schema);
}

/* A status heard between looks, for status (the next look replaces the
 * whole list). */
static void remember_flight_status(struct migration_runner *r, const char *name, const char *status)
{
    if (!r->in_flight)
        r->in_flight = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(r->in_flight, i, m) {
        const char *n = json_string_value(json_object_get(m, "name"));
        if (n && !strcmp(n, name)) {
            json_object_set_new(m, "status", json_string(status));
            return;
        }
    }
    json_array_append_new(r->in_flight, json_pack("{s:s,s:s}", "name", name, "status", status));
}

/* Whether the migration this runner follows is still in flight: news of
 * another one is then news of one beside it, routed, not followed. Its
 * route in place counts, and so does a load of its state under way: the
 * status read last may be none yet (found by the seeds' history through a
 * proxy: the news of e5's start came while 0003's state was loading, the
 * engine followed e5 instead, 0003's route went with it until the next
 * look, and the old release's prepared SELECT * met e5's old shape of
 * checks, "cached plan must not change result type"). */
static int own_in_flight(const struct migration_runner *r)
{
    return r->name && (mig_word_in_progress(r->table_status) || record_working_locally(r) || r->state_loading ||
                       relay_route_index(r->relay, r->name) >= 0);
}

/* The fleet saw the followed migration change, or heard of one (a
 * notification or the heartbeat's poll). A follower in the expand or the
 * backfill tries the engine lock each time, so the step goes on when the
 * engine doing it is gone. */
static void on_fleet_migration(void *ctx, const char *name, const char *status, double asked_ms)
{
    struct migration_runner *r = ctx;
    /* A look sent before this proxy's own work moved the migration on (the
     * finish's commit of "active") can answer after that move, with what
     * the row said before it: that is no news, and following it would make
     * the proxy that did the work a follower of its own migration. Real
     * news comes again with the next look. */
    if (r->name && !strcmp(r->name, name) && asked_ms < r->own_move_ms && strcmp(status, r->table_status) != 0) {
        log_debug("migration %s: a look sent before this proxy's own last step says %s; not news", name, status);
        return;
    }
    if (r->name && strcmp(r->name, name) != 0 && own_in_flight(r)) {
        char vs[96], os[96];
        struct flight_route one;
        flight_route_of(name, status, vs, os, &one);
        relay_route_flight_one(r->relay, &one);
        remember_flight_status(r, name, status);
        return;
    }
    remember_latest(r->fleet_latest, name, status);
    if (!r->engine_db || record_working_locally(r))
        return;
    int same = r->name && strcmp(r->name, name) == 0;
    /* The migration this proxy's own start replaced, as it was then: a
     * start refused or failed before it recorded a row leaves it the most
     * recent in the table, and following it would put it in place of that
     * start and its reason (GET /migrations/current, the CLI's answer). */
    if (!same && is_latest(r->before_start, name, status))
        return;
    /* A status the table already had is not news. After a failure of this
     * proxy's own work (a batch, the expand) the table still says what it
     * said before: reloading would run the failing batch again and hide the
     * error from whoever reads the status. */
    if (same && strcmp(status, r->table_status) == 0 &&
        !((r->phase == MIG_PH_BACKFILLING || r->phase == MIG_PH_EXPANDING) && r->following))
        return;
    if (!same) {
        runner_reset_migration(r);
        r->follow_since_ms = 0;
        r->takeover_at_once = 0;
        runner_set_name(r, name);
        log_info("migration %s is %s in the database; following it", name, status);
    }
    r->following = 1;
    load_state(r);
}

/* Every migration in flight, as the look found them, routed beside the
 * one this runner runs or follows (whose route is its own: route_for). */
static void route_flight(struct migration_runner *r, const char *in_flight)
{
    json_t *list = json_loads(in_flight ? in_flight : "[]", 0, NULL);
    struct flight_route routes[RELAY_ROUTES_MAX];
    char schemas[RELAY_ROUTES_MAX][2][96];
    int n = 0;
    size_t i;
    json_t *m;
    json_array_foreach(list, i, m) {
        const char *name = json_string_value(json_object_get(m, "name"));
        const char *status = json_string_value(json_object_get(m, "status"));
        if (!name || !status || n == RELAY_ROUTES_MAX)
            continue;
        flight_route_of(name, status, schemas[n][0], schemas[n][1], &routes[n]);
        if (routes[n].old_schema)
            n++;
    }
    relay_route_flight(r->relay, routes, n);
    json_decref(r->in_flight);
    r->in_flight = json_is_array(list) ? list : (json_decref(list), NULL);
}

/* A heartbeat's look answered: the migrations in flight beside the
 * followed one are routed at once; the look is applied now when this
 * proxy agrees with the table (the migration followed is the one it
 * follows, or there is none); after the load it caused, when it caused
 * one; otherwise the next look tells (a proxy busy with work of its own
 * lets news wait, and the sessions waiting for it wait a look more, a
 * lease at most). */
static void on_fleet_looked(void *ctx, uint64_t look, const char *name, const char *in_flight)
{
    struct migration_runner *r = ctx;
    route_flight(r, in_flight);
    if (r->state_loading) {
        r->look_after_load = look;
        return;
    }
    /* agrees: the one it follows, or the one its own refused start left
     * the most recent (on_fleet_migration does not follow that one) */
    if (!name[0] || (r->name && !strcmp(r->name, name)) || !strcmp(r->before_start[0], name))
        relay_version_look_applied(r->relay, look);
}


void record_find_latest(struct migration_runner *r)
{
    with_connection(r, find_latest);
}

void record_follow_fleet(struct migration_runner *r)
{
    if (!r->fleet)
        return;
    fleet_observe(r->fleet, on_fleet_migration, on_fleet_looked, r);
    /* a migration started elsewhere reaches this proxy by a notification or
     * a heartbeat: a release that declares it waits for that, a lease at most */
    relay_version_gate(r->relay, fleet_lease_ms(r->fleet));
}

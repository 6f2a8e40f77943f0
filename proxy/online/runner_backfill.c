/* The runner's side of the backfill (backfill_runner.c runs the batches):
 * the hooks through which the batches say how they ended, the throttle
 * settings saved with the migration's state, the diagnosis of a batch
 * that failed on the data, and the validations that finish the backfill
 * on the worker. How each ends goes up to the runner as an event. */
#include "runner_internal.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backfill.h"
#include "clock.h"
#include "engine.h"
#include "log.h"
#include "migration_state.h"

/* The migration file's backfill section sets the starting values. */
void settings_throttle_from_migration(struct throttle_settings *t, const struct mig_backfill_settings *bf)
{
    t->max_rows_per_sec = bf->max_rows_per_sec;
    t->target_ms = bf->target_ms;
    t->sleep_ratio = bf->sleep_ratio;
    t->workers = bf->workers;
    t->app_p99_budget = bf->app_p99_budget;
    /* not in the file: a new run starts from its default, as the rest does */
    const struct setting *floor = setting_by_name(SETTING_THROTTLE, "app_p99_floor_ms");
    t->app_p99_floor_ms = floor ? (long)floor->def : 0;
}

/* Settings saved with the state win over the migration file's. Each load
 * starts again from the file's: a state saved with none (a run started
 * again after a rollback) must not keep what an earlier load of the old
 * run's settings left here (its operator pause). */
static int saved_throttle(const struct migration_runner *r, const char *saved, struct throttle_settings *out)
{
    char err[256];
    settings_throttle_defaults(out);
    settings_throttle_from_migration(out, &r->mig.backfill);
    if (!saved || !saved[0] || settings_throttle_load(out, saved, err, sizeof err) == 0)
        return 0;
    log_warn("migration %s: ignoring saved throttle settings: %s", r->name, err);
    return -1; /* out holds the file's: a load applies all of saved or none */
}

/* Settings changed here and not saved yet (the connection was down) win
 * over the saved ones and the file's. */
void backfill_restore_throttle(struct migration_runner *r, const char *saved)
{
    if (!r->throttle_dirty)
        saved_throttle(r, saved, &r->thr);
}

static void on_throttle_saved(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    (void)sqlstate;
    struct migration_runner *r = ctx;
    if (error)
        log_warn("migration %s: saving the throttle settings: %s", r->name, error);
    /* lost with the connection: still to be saved, and not to be replaced by
     * the stale settings the reconnect's reload reads */
    if (error && connection_lost(sqlstate))
        r->throttle_dirty = 1;
    bf_runner_kick(&r->bfr);
}

/* Settings changed through the admin API live with the migration's state,
 * so a restarted proxy (or another one) continues with them. */
static int save_throttle(struct migration_runner *r, pgasync_done_fn done)
{
    r->throttle_dirty = 0;
    char *text = settings_throttle_dump(&r->thr);
    const char *values[2] = {r->name, text};
    int rc = text ? pgasync_send(&r->db, MIG_STATE_SAVE_THROTTLE_SQL, 2, values, done, r) : -1;
    free(text);
    if (rc != 0)
        r->throttle_dirty = 1;
    return rc;
}

/* ---- settings another proxy of the fleet saved ---- */

/* A throttle request answered by another proxy is saved with the state
 * (below); the proxy running the batches reads it this often, so a pause
 * sent to any proxy of the fleet holds the batches within about a second. */
#define THROTTLE_READ_EVERY_MS 1000.0
#define THROTTLE_SAVE_RETRY_MS 200

/* What a load of the state would set, taken when it differs from the live
 * settings. */
static void adopt_saved_throttle(struct migration_runner *r, const char *saved)
{
    struct throttle_settings next;
    if (saved_throttle(r, saved, &next) != 0)
        return;
    json_t *now = settings_throttle_json(&r->thr), *then = settings_throttle_json(&next);
    if (!json_equal(now, then)) {
        char *text = json_dumps(then, JSON_COMPACT | JSON_SORT_KEYS);
        log_info("migration %s: throttle settings saved by another proxy taken: %s", r->name, text ? text : "");
        free(text);
        r->thr = next;
        bf_runner_settings_changed(&r->bfr);
    }
    json_decref(now);
    json_decref(then);
}

static void on_throttle_read(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)sqlstate;
    struct migration_runner *r = ctx;
    r->throttle_read_ms = clock_now_ms();
    /* a lost connection is the batches' to notice; a change made here
     * meanwhile wins over what was read */
    if (!error && !r->throttle_dirty && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
        adopt_saved_throttle(r, PQgetvalue(res, 0, 0));
    bf_runner_kick(&r->bfr);
}

static void save_when_free(evutil_socket_t fd, short what, void *arg);

static void retry_save(struct migration_runner *r)
{
    struct timeval tv = {0, THROTTLE_SAVE_RETRY_MS * 1000};
    r->throttle_dirty = 1;
    if (r->throttle_timer)
        evtimer_add(r->throttle_timer, &tv);
}

static void on_saved_for_another(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    struct migration_runner *r = ctx;
    if (error) {
        log_warn("migration %s: saving the throttle settings: %s", r->name, error);
        if (connection_lost(sqlstate))
            retry_save(r);
        return;
    }
    /* no row yet (the engine that runs the expand writes it): again later */
    if (!strcmp(PQcmdTuples(res), "0"))
        retry_save(r);
}

static void save_after_connect(struct migration_runner *r)
{
    if (save_throttle(r, on_saved_for_another) != 0)
        retry_save(r);
}

static void save_when_free(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct migration_runner *r = arg;
    if (!r->throttle_dirty || !r->name || bf_runner_active(&r->bfr))
        return; /* saved, forgotten, or the batches here save it */
    if (pgasync_ready(&r->db) && !r->db.busy && save_throttle(r, on_saved_for_another) == 0)
        return;
    if (r->conn.closed_while_idle) {
        with_connection(r, save_after_connect);
        return;
    }
    retry_save(r);
}

/* Saved now only when another proxy runs the batches: on the proxy that
 * will run them, the settings stay here (a load of the state keeps them)
 * until its batches save them between two of their own. */
int backfill_throttle_changed(struct migration_runner *r)
{
    bf_runner_settings_changed(&r->bfr);
    r->throttle_dirty = r->name != NULL;
    if (bf_runner_active(&r->bfr) || !r->following)
        return 1;
    save_when_free(-1, 0, r);
    return 0;
}

/* ---- a batch that failed on the data ---- */

static void after_diagnosis(void *ctx, int code, const char *why)
{
    struct migration_runner *r = ctx;
    r->step_status = code;
    if (r->stop_backfill) {
        runner_report(r, RUNNER_EV_BACKFILL_STOPPED, NULL, NULL);
        return;
    }
    if (code == 0) { /* it went through this time: carry on from the checkpoint */
        r->error[0] = '\0';
        runner_report(r, RUNNER_EV_RELOAD, NULL, NULL);
        return;
    }
    runner_report(r, RUNNER_EV_STEP_FAILED, why, NULL);
}

/* A batch failed on the data (an `up` expression that errors on some row).
 * The engine runs the next batch of the same range once more on the worker
 * and, when it fails, names the row and the expression; its queries stay
 * off the loop, under the engine lock this proxy holds (hand_lock_to_step). */
static void diagnose_batch(struct migration_runner *r, const struct backfill *b, const char *error)
{
    snprintf(r->error, sizeof r->error, "backfill batch on %.200s failed: %.700s", b->table->qname, error);
    log_warn("migration %s: %s; finding the row", r->name, r->error);
    hand_lock_to_step(r);
    give_slot_to_step(r);
    if (engine_worker_set_range(&r->worker, b->table->schema, b->table->name, b->range_no) != 0 ||
        engine_worker_run(&r->worker, ENGINE_JOB_DIAGNOSE, r->engine_db, NULL, 0, after_diagnosis, r) != 0)
        runner_report(r, RUNNER_EV_STEP_FAILED, r->error, NULL);
}

/* ---- the hooks: how the batches ended ---- */

static void backfill_ended(void *ctx, enum bf_end how, const char *msg, const char *sqlstate,
                           const struct backfill *range)
{
    struct migration_runner *r = ctx;
    struct bf_progress p;
    switch (how) {
    case BF_END_DONE:
        bf_runner_progress(&r->bfr, 0, 0, &p);
        log_info("migration %s: backfill done, %lld rows in %.1f s", r->name, p.done,
                 (r->bfr.finished_ms - r->bfr.started_ms) / 1000.0);
        runner_report(r, RUNNER_EV_BACKFILL_DONE, NULL, NULL);
        return;
    case BF_END_STOPPED: runner_report(r, RUNNER_EV_BACKFILL_STOPPED, NULL, NULL); return;
    case BF_END_LOST: runner_report(r, RUNNER_EV_CONNECTION_LOST, msg, sqlstate); return;
    case BF_END_DATA: diagnose_batch(r, range, msg); return;
    case BF_END_FAILED: break;
    }
    runner_report(r, RUNNER_EV_STEP_FAILED, msg, NULL);
}

static int backfill_stopping(void *ctx)
{
    const struct migration_runner *r = ctx;
    return r->stop_backfill;
}

static int backfill_idle(void *ctx)
{
    struct migration_runner *r = ctx;
    if (r->throttle_dirty)
        return save_throttle(r, on_throttle_saved) == 0;
    if (clock_now_ms() - r->throttle_read_ms < THROTTLE_READ_EVERY_MS)
        return 0;
    const char *values[1] = {r->name};
    return pgasync_send(&r->db, MIG_STATE_READ_THROTTLE_SQL, 1, values, on_throttle_read, r) == 0;
}

static void backfill_running(void *ctx)
{
    struct migration_runner *r = ctx;
    r->error[0] = '\0';
}

int runner_backfill_init(struct migration_runner *r)
{
    struct bf_runner_hooks hooks = {.ctx = r, .ended = backfill_ended, .stopping = backfill_stopping,
                                    .idle = backfill_idle, .running = backfill_running};
    r->throttle_timer = evtimer_new(r->base, save_when_free, r);
    if (!r->throttle_timer)
        return -1;
    return bf_runner_init(&r->bfr, r->base, r->relay, r->engine_db, &hooks, &r->batch_seconds, &r->thr);
}

void runner_backfill_free(struct migration_runner *r)
{
    bf_runner_free(&r->bfr);
    if (r->throttle_timer)
        event_free(r->throttle_timer);
    r->throttle_timer = NULL;
}

void backfill_start_batches(struct migration_runner *r)
{
    bf_runner_start(&r->bfr, &r->db, r->name, &r->plan, &r->mig.backfill);
}

/* ---- the validations that finish it ---- */

/* The lock the finish ran under is let go of first: what comes next (a
 * rollback's worker, the checks before a cutover) takes it itself. */
static void finish_ended(struct migration_runner *r)
{
    if (r->step_status == 0) {
        runner_report(r, RUNNER_EV_STEP_DONE, NULL, NULL);
        return;
    }
    /* The finish took the lock itself (this proxy held none when the last
     * batch ended) and a follower that has seen the backfill run for two
     * leases took it first: it finds the backfill done and finishes it. That
     * is no failure: this proxy follows it (and takes the work back should
     * it die). */
    if (!r->rollback_asked && r->fleet && strstr(r->error, ENGINE_LOCK_HELD_MSG)) {
        log_info("migration %s: another proxy of the fleet took the engine lock to finish the backfill; following"
                 " it", r->name);
        runner_report(r, RUNNER_EV_LOCK_LOST, r->error, NULL);
        return;
    }
    char msg[sizeof r->error];
    snprintf(msg, sizeof msg, "finishing the backfill: %.990s", r->error);
    runner_report(r, RUNNER_EV_STEP_FAILED, msg, NULL);
}

static void after_finish(void *ctx, int code, const char *why)
{
    struct migration_runner *r = ctx;
    r->step_status = code;
    if (code != 0)
        snprintf(r->error, sizeof r->error, "%.1000s", why);
    release_lock_then(r, finish_ended);
}

/* The validations, under the engine lock the batches held (hand_lock_to_step). */
void backfill_finish_step(struct migration_runner *r)
{
    hand_lock_to_step(r);
    give_slot_to_step(r);
    if (engine_worker_run(&r->worker, ENGINE_JOB_FINISH, r->engine_db, NULL, 0, after_finish, r) != 0)
        after_finish(r, ENGINE_FAILED, r->worker.why);
}

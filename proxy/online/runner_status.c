/* What the runner shows and what the throttle request changes: GET
 * /migrations/current, GET /status's engine connection, the numbers
 * GET /metrics renders, the answers to the requests that wait, and the
 * live backfill settings. It reads the runner's state and moves no phase. */
#include "migration_runner.h"
#include "runner_internal.h"

#include <string.h>

#include "fleet.h"
#include "relay_control.h"

static json_t *backfill_json(const struct migration_runner *r)
{
    return bf_runner_json(&r->bfr, mig_phase_past_backfill(r->phase), r->recorded_rows);
}

/* backfill.c's throttle names, in the words metrics use for label values. */
static const char *throttle_word(const struct migration_runner *r)
{
    return r->phase == MIG_PH_BACKFILLING ? bf_runner_throttle_word(&r->bfr) : "none";
}

/* Past the backfill, whatever this process counted (a follower, or a
 * proxy restarted after it, counted nothing): the rows are all done. */
static json_t *in_flight_json(const struct migration_runner *r);

void runner_metrics(const struct migration_runner *r, struct runner_metrics *out)
{
    struct bf_progress p;
    bf_runner_progress(&r->bfr, mig_phase_past_backfill(r->phase), r->recorded_rows, &p);
    memset(out, 0, sizeof *out);
    out->name = r->phase != MIG_PH_IDLE && r->name ? r->name : NULL;
    out->phase = mig_phase_word(r->phase);
    out->phases = mig_phase_words();
    out->nphases = MIG_NPHASES;
    out->rows_done = p.done;
    out->rows_total = p.total;
    out->rows_per_s = p.rate;
    out->progress = p.percent / 100.0;
    out->eta_s = p.all_done || r->phase != MIG_PH_BACKFILLING ? 0 : p.rate > 0 ? p.eta_s : -1;
    const char *word = throttle_word(r);
    out->paused = !strcmp(word, "paused");
    out->throttle = out->paused ? "none" : word;
    out->following = r->following && r->phase != MIG_PH_COMPLETED;
    out->batch_seconds = &r->batch_seconds;
    out->cutover = &r->cut.totals;
    bf_runner_budget(&r->bfr, &out->budget);
    out->in_flight = in_flight_json(r);
}

/* Every migration this proxy routes, oldest first: its status (this
 * engine's phase for its own, else as the fleet last saw it), the path a
 * session declaring it gets, the sessions here that do, and whether this
 * proxy's engine runs it. */
static json_t *in_flight_json(const struct migration_runner *r)
{
    json_t *routes = relay_routes_json(r->relay);
    size_t i, j;
    json_t *route, *seen;
    json_array_foreach(routes, i, route) {
        const char *name = json_string_value(json_object_get(route, "name"));
        int own = r->name && name && !strcmp(name, r->name);
        const char *status = own ? mig_phase_word(r->phase) : NULL;
        json_array_foreach(r->in_flight, j, seen) {
            const char *n = json_string_value(json_object_get(seen, "name"));
            if (!status && n && name && !strcmp(n, name))
                status = json_string_value(json_object_get(seen, "status"));
        }
        json_object_set_new(route, "status", status ? json_string(status) : json_null());
        json_object_set_new(route, "engine", json_string(own ? "this proxy" : beside_running(r, name)
                                                                              ? "this proxy, beside" : "elsewhere"));
    }
    return routes;
}

/* f: what the lifecycle's admission rules need besides the phase. */
void status_answer(struct migration_runner *r, const struct waiter *w, const struct mig_facts *f)
{
    struct waiter once = *w;
    json_t *body = json_pack("{s:s,s:s,s:o,s:o,s:o}", "name", r->name, "phase", mig_phase_word(r->phase), "error",
                             r->error[0] ? json_string(r->error) : json_null(), "backfill", backfill_json(r),
                             "cutover", cutover_json(r));
    /* exit status 2: the migration was refused before any DDL */
    json_object_set_new(body, "invalid", json_boolean(r->phase == MIG_PH_FAILED && r->step_status == 2));
    json_object_set_new(body, "blocked_by", r->blk.by ? json_incref(r->blk.by) : json_null());
    json_object_set_new(body, "following", json_boolean(r->following && r->phase != MIG_PH_COMPLETED));
    json_object_set_new(body, "beside", beside_json(r));
    json_object_set_new(body, "beside_budget", beside_budget_json(r));
    /* what the status page offers: the lifecycle's own answers */
    json_object_set_new(body, "in_progress", json_boolean(mig_phase_in_progress(r->phase)));
    static const enum mig_request acts[] = {MIG_REQ_COMPLETE, MIG_REQ_ROLLBACK, MIG_REQ_FINALIZE, MIG_REQ_REVERT};
    json_t *allowed = json_object();
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++)
        json_object_set_new(allowed, mig_request_word(acts[i]), json_boolean(mig_admit(r->phase, acts[i], f, NULL, 0) == 0));
    json_object_set_new(body, "allowed", allowed);
    json_object_set_new(body, "in_flight", in_flight_json(r));
    if (r->fleet)
        json_object_set_new(body, "fleet", fleet_status_json(r->fleet));
    runner_answer(&once, 200, body);
}

void throttle_answer(struct migration_runner *r, const struct runner_request *q)
{
    struct waiter w = {q->answer, q->ctx};
    char err[512];
    struct throttle_settings next = r->thr;
    if (settings_throttle_update(&next, q->body, q->body_len, err, sizeof err) != 0) {
        runner_answer(&w, 400, runner_error_json(err));
        return;
    }
    json_t *before = settings_throttle_json(&r->thr), *after = settings_throttle_json(&next);
    r->thr = next;
    int here = backfill_throttle_changed(r);
    /* what this request changed, for the caller and the admin log */
    json_t *changed = json_object();
    const char *key;
    json_t *v;
    json_object_foreach(after, key, v) {
        json_t *old = json_object_get(before, key);
        if (!json_equal(old, v))
            json_object_set_new(changed, key, json_pack("{s:O,s:O}", "from", old, "to", v));
    }
    json_decref(before);
    json_object_set_new(after, "changed", changed);
    /* false: saved with the migration's state, and the proxy running the
     * batches takes it between two of them */
    json_object_set_new(after, "backfill_here", json_boolean(here));
    runner_answer(&w, 200, after);
}

/* The answers to a waiting complete and rollback, when the runner's move
 * answers them (migration_lifecycle.h: mig_waiters_on_move). */
void answer_complete(struct migration_runner *r, int status)
{
    json_t *body = cutover_json(r);
    if (!json_is_object(body))
        body = json_object();
    json_object_set_new(body, "status", json_string(mig_phase_word(r->phase)));
    json_object_set_new(body, "name", json_string(r->name ? r->name : ""));
    if (status != 200 && r->error[0])
        json_object_set_new(body, "error", json_string(r->error));
    if (r->phase == MIG_PH_SWITCHED && status == 200)
        json_object_set_new(body, "revert_window_s", json_integer(r->cut_opt.revert_window_s));
    runner_answer(&r->complete_w, status, body);
}

void answer_rollback(struct migration_runner *r, int status)
{
    if (status == 200)
        runner_answer(&r->rollback_w, 200,
                      json_pack("{s:s,s:s}", "status", mig_phase_word(r->phase), "name", r->name));
    else
        runner_answer(&r->rollback_w, status, json_pack("{s:s,s:s}", "status", mig_phase_word(r->phase), "error",
                                                        r->error[0] ? r->error : "the rollback did not run"));
}

json_t *runner_connection_json(const struct migration_runner *r)
{
    if (!r->engine_db)
        return NULL;
    json_t *o = pgasync_status_json(&r->db);
    json_object_set_new(o, "blocked_by", r->blk.by ? json_incref(r->blk.by) : json_null());
    json_object_set_new(o, "closed_while_idle", json_boolean(r->conn.closed_while_idle));
    return o;
}

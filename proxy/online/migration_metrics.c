/* Prometheus series for migrations and the fleet (see migration_metrics.h).
 * Conventions: counters end in _total, units (_seconds) are in the name,
 * every family has HELP and TYPE, and a state is a set of 0/1 series with
 * one label (phase, reason), all present, so a graph or an alert sees 0
 * rather than a series that comes and goes. */
#include "migration_metrics.h"

#include <event2/buffer.h>
#include <inttypes.h>
#include <stddef.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "fleet.h"
#include "metrics.h"
#include "migration_runner.h"
#include "relay_control.h"
#include "version.h"

/* Throttles that slow a batch down (an operator's pause has its own gauge). */
static const char *const throttle_reasons[] = {"app_latency", "replica_lag", "lock_wait", "max_rows", "sleep_ratio"};

void migration_metrics_write_relay(void *ctx, struct evbuffer *out)
{
    const struct relay *relay = ctx;
    metrics_write_header(out, "pgtandem_build_info", "gauge", "The running pgtandem's version (always 1).");
    evbuffer_add_printf(out, "pgtandem_build_info{version=\"%s\"} 1\n", PGTANDEM_VERSION);
    metrics_write_header(out, "pgtandem_sessions", "gauge",
                         "Ready client sessions by the shape they asked for (pgtandem.version; old: none).");
    json_t *counts = relay_version_counts(relay);
    const char *version;
    json_t *n;
    char esc[256];
    json_object_foreach(counts, version, n) {
        metrics_escape_label(version, esc, sizeof esc);
        evbuffer_add_printf(out, "pgtandem_sessions{version=\"%s\"} %" JSON_INTEGER_FORMAT "\n", esc,
                            json_integer_value(n));
    }
    json_decref(counts);
}

static void write_headers(struct evbuffer *out)
{
    static const char *const families[][3] = {
        {"pgtandem_migration_phase", "gauge",
         "1 for the migration's current phase (idle, expanding, backfilling, finishing, active, completing, "
         "completed, rolling_back, rolled_back, failed, switched), 0 for the others."},
        {"pgtandem_migration_following", "gauge", "1 while another proxy of the fleet does the migration's work."},
        {"pgtandem_migration_rows_done", "gauge", "Rows the backfill has done (from its checkpoints)."},
        {"pgtandem_migration_rows_estimated", "gauge",
         "Rows the backfill expects to do in all (the planner's estimate, at least rows done)."},
        {"pgtandem_migration_progress_ratio", "gauge", "The backfill's progress from 0 to 1 (1 once it is done)."},
        {"pgtandem_migration_rows_per_second", "gauge", "Backfill rate since this process started it."},
        {"pgtandem_migration_eta_seconds", "gauge",
         "Seconds until the backfill is done at the current rate (0 when done; absent while unknown)."},
        {"pgtandem_migration_paused", "gauge", "1 while an operator has paused the backfill."},
        {"pgtandem_migration_throttled", "gauge",
         "1 while the backfill is slowed down for this reason (app_latency, replica_lag, lock_wait, max_rows, "
         "sleep_ratio)."},
        {"pgtandem_migration_batches_total", "counter", "Backfill batches this process has run."},
        {"pgtandem_migration_app_p99_baseline_seconds", "gauge",
         "The application's p99 latency through this proxy without the backfill, by route (old, new release); "
         "absent until measured."},
        {"pgtandem_migration_app_p99_budget_seconds", "gauge",
         "The p99 the backfill keeps the application within, by route (app_p99_budget x the baseline, or "
         "max_app_p99_ms); absent while there is none."},
        {"pgtandem_migration_app_p99_seconds", "gauge",
         "The application's p99 latency over the last second the budget judged, by route; absent without traffic."},
        {"pgtandem_migration_budget_engaged", "gauge",
         "1 while the latency budget holds the backfill back, by kind (ratio, absolute)."},
        {"pgtandem_migration_budget_starved", "gauge",
         "1 while the backfill cannot keep the application within its latency budget even at its smallest batches."},
        {"pgtandem_migration_in_flight", "gauge",
         "1 for every migration in flight this proxy routes, by its status and whose engine runs it (this proxy, "
         "this proxy, beside; elsewhere)."},
        {"pgtandem_migration_in_flight_sessions", "gauge",
         "Sessions on this proxy that declare the migration (pgtandem.version), for each one in flight."},
    };
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        metrics_write_header(out, families[i][0], families[i][1], families[i][2]);
}

static void write_budget(struct evbuffer *out, const char *m, const struct bf_budget_report *b)
{
    static const char *const routes[LATENCY_ROUTES] = {"old", "new"};
    static const struct {
        const char *name;
        size_t offset;
    } gauges[] = {
        {"pgtandem_migration_app_p99_baseline_seconds", offsetof(struct bf_budget_report, baseline_ms)},
        {"pgtandem_migration_app_p99_budget_seconds", offsetof(struct bf_budget_report, limit_ms)},
        {"pgtandem_migration_app_p99_seconds", offsetof(struct bf_budget_report, p99_ms)},
    };
    for (size_t g = 0; g < sizeof gauges / sizeof gauges[0]; g++) {
        const double *v = (const double *)(const void *)((const char *)b + gauges[g].offset);
        for (int r = 0; r < LATENCY_ROUTES; r++)
            if (v[r] > 0)
                evbuffer_add_printf(out, "%s{migration=\"%s\",route=\"%s\"} %.6f\n", gauges[g].name, m, routes[r],
                                    v[r] / 1000.0);
    }
    static const char *const kinds[] = {"ratio", "absolute"};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        evbuffer_add_printf(out, "pgtandem_migration_budget_engaged{migration=\"%s\",kind=\"%s\"} %d\n", m, kinds[k],
                            b->engaged && strcmp(b->kind, kinds[k]) == 0);
    evbuffer_add_printf(out, "pgtandem_migration_budget_starved{migration=\"%s\"} %d\n", m, b->starved);
}

static void write_backfill(struct evbuffer *out, const char *m, const struct runner_metrics *rm)
{
    for (int i = 0; i < rm->nphases; i++)
        evbuffer_add_printf(out, "pgtandem_migration_phase{migration=\"%s\",phase=\"%s\"} %d\n", m, rm->phases[i],
                            strcmp(rm->phases[i], rm->phase) == 0);
    evbuffer_add_printf(out,
                        "pgtandem_migration_following{migration=\"%s\"} %d\n"
                        "pgtandem_migration_rows_done{migration=\"%s\"} %lld\n"
                        "pgtandem_migration_rows_estimated{migration=\"%s\"} %.0f\n"
                        "pgtandem_migration_rows_per_second{migration=\"%s\"} %.3f\n",
                        m, rm->following, m, rm->rows_done, m, rm->rows_total, m, rm->rows_per_s);
    evbuffer_add_printf(out, "pgtandem_migration_progress_ratio{migration=\"%s\"} %.4f\n", m, rm->progress);
    if (rm->eta_s >= 0)
        evbuffer_add_printf(out, "pgtandem_migration_eta_seconds{migration=\"%s\"} %.1f\n", m, rm->eta_s);
    evbuffer_add_printf(out, "pgtandem_migration_paused{migration=\"%s\"} %d\n", m, rm->paused);
    for (size_t i = 0; i < sizeof throttle_reasons / sizeof throttle_reasons[0]; i++)
        evbuffer_add_printf(out, "pgtandem_migration_throttled{migration=\"%s\",reason=\"%s\"} %d\n", m,
                            throttle_reasons[i], strcmp(throttle_reasons[i], rm->throttle) == 0);
    evbuffer_add_printf(out, "pgtandem_migration_batches_total{migration=\"%s\"} %" PRIu64 "\n", m,
                        histogram_count(rm->batch_seconds));
    write_budget(out, m, &rm->budget);
}

/* Each migration in flight, the proxy's own and the ones it routes. */
static void write_in_flight(struct evbuffer *out, const json_t *list)
{
    size_t i;
    const json_t *one;
    json_array_foreach(list, i, one) {
        const char *status = json_string_value(json_object_get(one, "status"));
        char m[256], st[64], engine[64];
        metrics_escape_label(json_string_value(json_object_get(one, "name")), m, sizeof m);
        metrics_escape_label(status ? status : "unknown", st, sizeof st);
        metrics_escape_label(json_string_value(json_object_get(one, "engine")), engine, sizeof engine);
        evbuffer_add_printf(out, "pgtandem_migration_in_flight{migration=\"%s\",status=\"%s\",engine=\"%s\"} 1\n", m,
                            st, engine);
        evbuffer_add_printf(out, "pgtandem_migration_in_flight_sessions{migration=\"%s\"} %" JSON_INTEGER_FORMAT "\n",
                            m, json_integer_value(json_object_get(one, "sessions")));
    }
}

void migration_metrics_write_runner(void *ctx, struct evbuffer *out)
{
    struct runner_metrics rm;
    runner_metrics(ctx, &rm);
    char m[256], labels[300];
    if (rm.name) {
        metrics_escape_label(rm.name, m, sizeof m);
        snprintf(labels, sizeof labels, "migration=\"%s\"", m);
    }
    write_headers(out);
    if (rm.name)
        write_backfill(out, m, &rm);
    write_in_flight(out, rm.in_flight);
    json_decref(rm.in_flight);
    metrics_write_header(out, "pgtandem_migration_batch_duration_seconds", "histogram",
                         "How long each backfill batch took (its statement, checkpoint included).");
    if (rm.name)
        metrics_write_histogram(out, "pgtandem_migration_batch_duration_seconds", labels, rm.batch_seconds);
    metrics_write_header(out, "pgtandem_migration_cutover_attempts_total", "counter",
                         "Cutover attempts by how they ended: committed, blocked (nobody held), abandoned (held, "
                         "then timed out), refused (sessions bypass the proxies), failed.");
    if (rm.name)
        for (int i = 0; i < CUTOVER_ATTEMPT_OUTCOMES; i++)
            evbuffer_add_printf(out, "pgtandem_migration_cutover_attempts_total{%s,outcome=\"%s\"} %" PRIu64 "\n",
                                labels, cutover_attempt_outcomes[i], rm.cutover->attempts[i]);
    metrics_write_header(out, "pgtandem_migration_cutover_hold_seconds", "histogram",
                         "How long each cutover attempt held client traffic on this proxy.");
    if (rm.name)
        metrics_write_histogram(out, "pgtandem_migration_cutover_hold_seconds", labels, &rm.cutover->hold_seconds);
}

void migration_metrics_write_fleet(void *ctx, struct evbuffer *out)
{
    struct fleet_metrics fm;
    fleet_metrics(ctx, &fm);
    metrics_write_header(out, "pgtandem_fleet_connected", "gauge", "1 while the fleet's connection to the database is up.");
    evbuffer_add_printf(out, "pgtandem_fleet_connected %d\n", fm.connected);
    metrics_write_header(out, "pgtandem_fleet_lease_seconds", "gauge",
                         "The fleet lease: a proxy silent this long is out of the fleet (and fences itself).");
    evbuffer_add_printf(out, "pgtandem_fleet_lease_seconds %.3f\n", fm.lease_s);
    metrics_write_header(out, "pgtandem_fleet_lease_age_seconds", "gauge",
                         "Seconds since the heartbeat that last renewed this proxy's lease was sent (absent before "
                         "the first).");
    if (fm.lease_age_s >= 0)
        evbuffer_add_printf(out, "pgtandem_fleet_lease_age_seconds %.3f\n", fm.lease_age_s);
    metrics_write_header(out, "pgtandem_fleet_heartbeat_failures_total", "counter",
                         "Heartbeats that were due and did not renew the lease (an error, or no connection).");
    evbuffer_add_printf(out, "pgtandem_fleet_heartbeat_failures_total %llu\n", fm.heartbeat_failures);
    metrics_write_header(out, "pgtandem_fleet_members", "gauge", "Live proxies of the fleet, as of the last heartbeat.");
    evbuffer_add_printf(out, "pgtandem_fleet_members %zu\n", fm.members);
    metrics_write_header(out, "pgtandem_fleet_bypassing_sessions", "gauge",
                         "Client sessions on the database that come through no live proxy, as of the last heartbeat.");
    evbuffer_add_printf(out, "pgtandem_fleet_bypassing_sessions %zu\n", fm.bypassing);
    static const char *const via[3] = {"database", "peer", "self"};
    metrics_write_header(out, "pgtandem_fleet_hold_events_total", "counter",
                         "The fleet's cutover holds, by what came first and how: learned (a hold served for another "
                         "proxy, told by the database or on the peer port), released (what ended it: the database, "
                         "the coordinator on the peer port, or this proxy itself), acknowledged (as the coordinator: "
                         "another proxy's \"held\"), unconfirmed (a hold served that the database did not have).");
    for (int i = 0; i < 2; i++)
        evbuffer_add_printf(out, "pgtandem_fleet_hold_events_total{event=\"learned\",via=\"%s\"} %llu\n", via[i],
                            fm.holds_learned[i]);
    for (int i = 0; i < 3; i++)
        evbuffer_add_printf(out, "pgtandem_fleet_hold_events_total{event=\"released\",via=\"%s\"} %llu\n", via[i],
                            fm.holds_released[i]);
    for (int i = 0; i < 2; i++)
        evbuffer_add_printf(out, "pgtandem_fleet_hold_events_total{event=\"acknowledged\",via=\"%s\"} %llu\n",
                            via[i], fm.acks[i]);
    evbuffer_add_printf(out, "pgtandem_fleet_hold_events_total{event=\"unconfirmed\",via=\"database\"} %llu\n",
                        fm.holds_unconfirmed);
    metrics_write_header(out, "pgtandem_fleet_peer_messages_total", "counter",
                         "Cutover messages on the peer port: hold requests sent as coordinator (asked), messages "
                         "that did not verify (refused), channels that broke before the participant answered (failed).");
    evbuffer_add_printf(out, "pgtandem_fleet_peer_messages_total{event=\"asked\"} %llu\n", fm.peer_asked);
    evbuffer_add_printf(out, "pgtandem_fleet_peer_messages_total{event=\"refused\"} %llu\n", fm.peer_refused);
    evbuffer_add_printf(out, "pgtandem_fleet_peer_messages_total{event=\"failed\"} %llu\n", fm.peer_failed);
}

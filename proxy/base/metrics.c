/* Metrics: plain counters plus a fixed-bucket latency histogram, the same
 * buckets Prometheus client libraries use by default (in seconds). */
#include "metrics.h"

#include <event2/buffer.h>
#include <inttypes.h>

static const uint64_t bucket_bounds_us[LATENCY_BUCKETS] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000,
    2500000, 5000000, 10000000};

static int bucket_for(uint64_t us)
{
    for (int i = 0; i < LATENCY_BUCKETS; i++)
        if (us <= bucket_bounds_us[i])
            return i;
    return LATENCY_BUCKETS;
}

void metrics_record_latency(struct metrics *m, uint64_t us)
{
    int b = bucket_for(us);
    m->latency_counts[b]++;
    m->window_counts[b]++;
    m->latency_sum_us += us;
    m->queries_total++;
}

double metrics_recent_p99_ms(const struct metrics *m)
{
    uint64_t total = 0;
    for (int i = 0; i <= LATENCY_BUCKETS; i++)
        total += m->window_counts[i];
    if (total == 0)
        return 0;
    uint64_t rank = total - total / 100, seen = 0;
    for (int i = 0; i < LATENCY_BUCKETS; i++) {
        seen += m->window_counts[i];
        if (seen >= rank)
            return (double)bucket_bounds_us[i] / 1000.0;
    }
    return (double)bucket_bounds_us[LATENCY_BUCKETS - 1] / 1000.0 * 2;
}

void metrics_decay_window(struct metrics *m)
{
    for (int i = 0; i <= LATENCY_BUCKETS; i++)
        m->window_counts[i] /= 2;
}

void metrics_write_prometheus(const struct metrics *m, uint32_t connections, int paused, struct evbuffer *out)
{
    evbuffer_add_printf(out,
                        "# HELP pgtandem_client_connections Client connections open now.\n"
                        "# TYPE pgtandem_client_connections gauge\n"
                        "pgtandem_client_connections %" PRIu32 "\n"
                        "# HELP pgtandem_connections_total Client connections accepted.\n"
                        "# TYPE pgtandem_connections_total counter\n"
                        "pgtandem_connections_total %" PRIu64 "\n"
                        "# HELP pgtandem_upstream_failures_total Client connections whose upstream could not be reached.\n"
                        "# TYPE pgtandem_upstream_failures_total counter\n"
                        "pgtandem_upstream_failures_total %" PRIu64 "\n"
                        "# HELP pgtandem_bytes_received_total Bytes received from each side.\n"
                        "# TYPE pgtandem_bytes_received_total counter\n"
                        "pgtandem_bytes_received_total{side=\"client\"} %" PRIu64 "\n"
                        "pgtandem_bytes_received_total{side=\"server\"} %" PRIu64 "\n"
                        "# HELP pgtandem_transactions_total Transactions (and autocommit statements) completed.\n"
                        "# TYPE pgtandem_transactions_total counter\n"
                        "pgtandem_transactions_total %" PRIu64 "\n"
                        "# HELP pgtandem_protocol_errors_total Connections closed for malformed messages.\n"
                        "# TYPE pgtandem_protocol_errors_total counter\n"
                        "pgtandem_protocol_errors_total %" PRIu64 "\n"
                        "# HELP pgtandem_paused 1 while new transactions are held.\n"
                        "# TYPE pgtandem_paused gauge\n"
                        "pgtandem_paused %d\n",
                        connections, m->connections_total, m->connections_failed, m->bytes_from_client,
                        m->bytes_from_server, m->transactions_total, m->protocol_errors, paused);
    evbuffer_add_printf(out,
                        "# HELP pgtandem_cancels_forwarded_total CancelRequests sent on to the proxy holding the session.\n"
                        "# TYPE pgtandem_cancels_forwarded_total counter\n"
                        "pgtandem_cancels_forwarded_total %" PRIu64 "\n",
                        m->cancels_forwarded);
    evbuffer_add_printf(out, "# HELP pgtandem_query_latency_seconds From a client message to its ReadyForQuery.\n"
                             "# TYPE pgtandem_query_latency_seconds histogram\n");
    uint64_t cumulative = 0;
    for (int i = 0; i < LATENCY_BUCKETS; i++) {
        cumulative += m->latency_counts[i];
        evbuffer_add_printf(out, "pgtandem_query_latency_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                            (double)bucket_bounds_us[i] / 1e6, cumulative);
    }
    cumulative += m->latency_counts[LATENCY_BUCKETS];
    evbuffer_add_printf(out,
                        "pgtandem_query_latency_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n"
                        "pgtandem_query_latency_seconds_sum %.6f\n"
                        "pgtandem_query_latency_seconds_count %" PRIu64 "\n",
                        cumulative, (double)m->latency_sum_us / 1e6, cumulative);
}

void metrics_write_holds(uint32_t held, int fenced, const char *reason, struct evbuffer *out)
{
    evbuffer_add_printf(out,
                        "# HELP pgtandem_held_sessions Sessions whose next message is held (a pause, a fleet hold, the fence).\n"
                        "# TYPE pgtandem_held_sessions gauge\n"
                        "pgtandem_held_sessions %" PRIu32 "\n"
                        "# HELP pgtandem_fenced 1 while this proxy's fleet lease has run out and it holds every session.\n"
                        "# TYPE pgtandem_fenced gauge\n"
                        "pgtandem_fenced %d\n"
                        "# HELP pgtandem_hold Why sessions are held now: fence, cutover, fleet_hold, operator_pause, refresh or none.\n"
                        "# TYPE pgtandem_hold gauge\n"
                        "pgtandem_hold{reason=\"%s\"} 1\n",
                        held, fenced, reason);
}

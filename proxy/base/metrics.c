/* Metrics: plain counters plus a fixed-bucket latency histogram, the same
 * buckets Prometheus client libraries use by default (in seconds), and the
 * text-format helpers (histograms, label values, hold series) the modules
 * that own other numbers render theirs with. */
#include "metrics.h"

#include <event2/buffer.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>

_Static_assert(LATENCY_BUCKETS <= HISTOGRAM_MAX_BOUNDS, "the latency buckets fit a struct histogram");

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

/* Bucket i's upper bound, LATENCY_FINE_MIN_US x LATENCY_FINE_STEP^i, worked
 * out once. Every statement the relay times is put in a bucket, so the
 * bucket comes from the bit length of the latency: a power of two spans
 * log(2)/log(1.1) = 7.3 buckets, and fine_first_of_bits[] holds the first
 * bucket that can hold a value of that many bits; a few comparisons from
 * there replace a log() and a ceil(). */
#define FINE_MAX_BITS 64
static double fine_bounds_us[LATENCY_FINE_BUCKETS + 1];
static int fine_first_of_bits[FINE_MAX_BITS + 1];

static void fine_tables(void)
{
    for (int k = 0; k <= LATENCY_FINE_BUCKETS; k++)
        fine_bounds_us[k] = LATENCY_FINE_MIN_US * pow(LATENCY_FINE_STEP, k);
    /* values of b bits are at least 2^(b-1): the first bucket whose bound reaches that */
    for (int bits = 1, i = 0; bits <= FINE_MAX_BITS; bits++) {
        double least = ldexp(1.0, bits - 1);
        while (i < LATENCY_FINE_BUCKETS && fine_bounds_us[i] < least)
            i++;
        fine_first_of_bits[bits] = i;
    }
}

static double fine_bound_us(int i)
{
    if (fine_bounds_us[0] == 0)
        fine_tables();
    return fine_bounds_us[i];
}

static int fine_bucket_for(uint64_t us)
{
    if (fine_bounds_us[0] == 0)
        fine_tables();
    if (us == 0)
        return 0;
    int i = fine_first_of_bits[64 - __builtin_clzll(us)];
    while (i < LATENCY_FINE_BUCKETS && fine_bounds_us[i] < (double)us)
        i++;
    return i;
}

double latency_fine_quantile_ms(const struct latency_fine *now, const struct latency_fine *before, double q,
                                uint64_t *n)
{
    uint64_t d[LATENCY_FINE_BUCKETS + 1], total = 0;
    for (int i = 0; i <= LATENCY_FINE_BUCKETS; i++) {
        d[i] = now->counts[i] - (before ? before->counts[i] : 0);
        total += d[i];
    }
    if (n)
        *n = total;
    if (total == 0)
        return 0;
    /* the rank of the sample at q, rounded up: p99 of 100 samples is the 99th */
    uint64_t rank = (uint64_t)ceil(q * (double)total), seen = 0;
    if (rank < 1)
        rank = 1;
    for (int i = 0; i < LATENCY_FINE_BUCKETS; i++) {
        seen += d[i];
        if (seen >= rank)
            return fine_bound_us(i) / 1000.0;
    }
    return fine_bound_us(LATENCY_FINE_BUCKETS) / 1000.0;
}

void metrics_record_latency(struct metrics *m, uint64_t us, int route)
{
    if (route >= 0 && route < LATENCY_ROUTES)
        m->route_latency[route].counts[fine_bucket_for(us)]++;
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
                        "# HELP pgtandem_paused 1 while new transactions are held (a pause or the fleet fence).\n"
                        "# TYPE pgtandem_paused gauge\n"
                        "pgtandem_paused %d\n",
                        connections, m->connections_total, m->connections_failed, m->bytes_from_client,
                        m->bytes_from_server, m->transactions_total, m->protocol_errors, paused);
    evbuffer_add_printf(out,
                        "# HELP pgtandem_cancels_forwarded_total CancelRequests sent on to the proxy holding the session.\n"
                        "# TYPE pgtandem_cancels_forwarded_total counter\n"
                        "pgtandem_cancels_forwarded_total %" PRIu64 "\n",
                        m->cancels_forwarded);
    struct histogram h = {.nbounds = LATENCY_BUCKETS, .sum = (double)m->latency_sum_us / 1e6};
    for (int i = 0; i < LATENCY_BUCKETS; i++)
        h.bounds[i] = (double)bucket_bounds_us[i] / 1e6;
    memcpy(h.counts, m->latency_counts, sizeof m->latency_counts);
    metrics_write_header(out, "pgtandem_query_latency_seconds", "histogram",
                         "From a client message to its ReadyForQuery.");
    metrics_write_histogram(out, "pgtandem_query_latency_seconds", "", &h);
}

/* Every kind of hold pause.c and its callers know; one not listed here
 * still gets its series while it holds. */
static const char *const hold_reasons[] = {"fence", "cutover", "fleet_hold", "operator_pause", "refresh", "route"};
#define NHOLD_REASONS (sizeof hold_reasons / sizeof hold_reasons[0])

/* name{reason="..."} for every known reason: value_now for the one that
 * holds, 0 for the others; a reason not listed gets its own series. */
static void write_per_reason(struct evbuffer *out, const char *name, const char *reason, const char *escaped,
                             uint64_t value_now)
{
    int known = strcmp(reason, "none") == 0;
    for (size_t i = 0; i < NHOLD_REASONS; i++) {
        int now = strcmp(hold_reasons[i], reason) == 0;
        known |= now;
        evbuffer_add_printf(out, "%s{reason=\"%s\"} %" PRIu64 "\n", name, hold_reasons[i], now ? value_now : 0);
    }
    if (!known)
        evbuffer_add_printf(out, "%s{reason=\"%s\"} %" PRIu64 "\n", name, escaped, value_now);
}

void metrics_write_holds(uint32_t held, int fenced, const char *reason, struct evbuffer *out)
{
    int holding = strcmp(reason, "none") != 0;
    char esc[64];
    metrics_escape_label(reason, esc, sizeof esc);
    metrics_write_header(out, "pgtandem_held_sessions", "gauge",
                         "Sessions whose next message is held now, by what holds them (a pause, a fleet hold, the fence).");
    write_per_reason(out, "pgtandem_held_sessions", reason, esc, held);
    metrics_write_header(out, "pgtandem_hold_active", "gauge",
                         "1 while this kind of hold is in force (the fence wins over a pause).");
    write_per_reason(out, "pgtandem_hold_active", reason, esc, holding ? 1 : 0);
    evbuffer_add_printf(out,
                        "# HELP pgtandem_fenced 1 while this proxy's fleet lease has run out and it holds every session.\n"
                        "# TYPE pgtandem_fenced gauge\n"
                        "pgtandem_fenced %d\n"
                        "# HELP pgtandem_hold Why sessions are held now: fence, cutover, fleet_hold, operator_pause, refresh, route or none.\n"
                        "# TYPE pgtandem_hold gauge\n"
                        "pgtandem_hold{reason=\"%s\"} 1\n",
                        fenced, esc);
}

/* ---- histograms and the text format ---- */

void histogram_init(struct histogram *h, const double *bounds, int nbounds)
{
    memset(h, 0, sizeof *h);
    h->nbounds = nbounds < HISTOGRAM_MAX_BOUNDS ? nbounds : HISTOGRAM_MAX_BOUNDS;
    for (int i = 0; i < h->nbounds; i++)
        h->bounds[i] = bounds[i];
}

void histogram_observe(struct histogram *h, double value)
{
    int b = 0;
    while (b < h->nbounds && value > h->bounds[b])
        b++;
    h->counts[b]++;
    h->sum += value;
}

uint64_t histogram_count(const struct histogram *h)
{
    uint64_t n = 0;
    for (int i = 0; i <= h->nbounds; i++)
        n += h->counts[i];
    return n;
}

void metrics_write_header(struct evbuffer *out, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void metrics_write_histogram(struct evbuffer *out, const char *name, const char *labels, const struct histogram *h)
{
    const char *sep = labels[0] ? "," : "";
    uint64_t cumulative = 0;
    for (int i = 0; i < h->nbounds; i++) {
        cumulative += h->counts[i];
        evbuffer_add_printf(out, "%s_bucket{%s%sle=\"%g\"} %" PRIu64 "\n", name, labels, sep, h->bounds[i],
                            cumulative);
    }
    cumulative += h->counts[h->nbounds];
    const char *open = labels[0] ? "{" : "", *close = labels[0] ? "}" : "";
    evbuffer_add_printf(out,
                        "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n"
                        "%s_sum%s%s%s %.6f\n"
                        "%s_count%s%s%s %" PRIu64 "\n",
                        name, labels, sep, cumulative, name, open, labels, close, h->sum, name, open, labels, close,
                        cumulative);
}

void metrics_escape_label(const char *value, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = value ? value : ""; *p && n + 3 < cap; p++) {
        if (*p == '\\' || *p == '"') {
            out[n++] = '\\';
            out[n++] = *p;
        } else if (*p == '\n') {
            out[n++] = '\\';
            out[n++] = 'n';
        } else {
            out[n++] = *p;
        }
    }
    if (cap)
        out[n < cap ? n : cap - 1] = '\0';
}

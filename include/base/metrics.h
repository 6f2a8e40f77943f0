/* Counters and histograms behind GET /metrics, and the helpers every
 * module that renders series uses (histograms, label values). */
#ifndef PGTANDEM_METRICS_H
#define PGTANDEM_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define LATENCY_BUCKETS 16

/* A finer latency histogram for the backfill's latency budget, kept per
 * route: the Prometheus buckets step 2-2.5x, too coarse for a budget of
 * 1.5x a baseline. Bucket i holds latencies up to LATENCY_FINE_MIN_US x
 * LATENCY_FINE_STEP^i (10% steps, 100 us to about 18 s); the last is
 * +Inf. Counts only grow: a window is the difference of two readings. */
#define LATENCY_FINE_BUCKETS 128
#define LATENCY_FINE_MIN_US 100.0
#define LATENCY_FINE_STEP 1.1
enum latency_route { LATENCY_ROUTE_OLD, LATENCY_ROUTE_NEW, LATENCY_ROUTES };
struct latency_fine {
    uint64_t counts[LATENCY_FINE_BUCKETS + 1];
};
/* The q quantile (0 < q <= 1) in milliseconds of the latencies counted in
 * now but not in before (NULL: since the start), and how many those are
 * (*n, may be NULL). 0 when there are none. */
double latency_fine_quantile_ms(const struct latency_fine *now, const struct latency_fine *before, double q,
                                uint64_t *n);

struct metrics {
    uint64_t connections_total;
    uint64_t connections_failed;
    uint64_t bytes_from_client;
    uint64_t bytes_from_server;
    uint64_t transactions_total;
    uint64_t queries_total;
    uint64_t protocol_errors;
    uint64_t cancels_forwarded;    /* CancelRequests sent on to the proxy that issued the key */
    uint64_t latency_counts[LATENCY_BUCKETS + 1]; /* last: +Inf */
    uint64_t latency_sum_us;
    /* a decaying window for the latency-aware backfill throttle */
    uint64_t window_counts[LATENCY_BUCKETS + 1];
    struct latency_fine route_latency[LATENCY_ROUTES];
};

/* route: the shape the session asked for (enum latency_route). */
void metrics_record_latency(struct metrics *m, uint64_t us, int route);
/* Approximate p99 in milliseconds over the recent window (0 when empty). */
double metrics_recent_p99_ms(const struct metrics *m);
/* Halves the recent window: called once a second so old samples fade. */
void metrics_decay_window(struct metrics *m);
/* Appends Prometheus text exposition to buf; returns bytes written. */
struct evbuffer;
void metrics_write_prometheus(const struct metrics *m, uint32_t connections, int paused, struct evbuffer *out);
/* pgtandem_held_sessions{reason}, pgtandem_hold_active{reason},
 * pgtandem_fenced and pgtandem_hold{reason}: reason is one word
 * (pause.h: pause_hold_info), "none" when nothing holds. Every known
 * reason has a series (0 when it does not hold), so alerts and graphs see
 * 0 rather than an absent series. */
void metrics_write_holds(uint32_t held, int fenced, const char *reason, struct evbuffer *out);

/* A histogram with fixed upper bounds (ascending, in the unit of the
 * series, seconds for *_seconds); the last count is +Inf. */
#define HISTOGRAM_MAX_BOUNDS 16
struct histogram {
    double bounds[HISTOGRAM_MAX_BOUNDS];
    int nbounds;
    uint64_t counts[HISTOGRAM_MAX_BOUNDS + 1];
    double sum;
};
/* Empties h and sets its bounds (at most HISTOGRAM_MAX_BOUNDS are kept). */
void histogram_init(struct histogram *h, const double *bounds, int nbounds);
void histogram_observe(struct histogram *h, double value);
uint64_t histogram_count(const struct histogram *h);

/* "# HELP name help\n# TYPE name type\n". */
void metrics_write_header(struct evbuffer *out, const char *name, const char *type, const char *help);
/* name_bucket{labels,le="..."} ... name_sum{labels} name_count{labels}
 * (no header). labels: already escaped `k="v",k2="v2"`, or "". */
void metrics_write_histogram(struct evbuffer *out, const char *name, const char *labels, const struct histogram *h);
/* A label value as the text format wants it (\\, \" and \n escaped),
 * cut to fit cap. */
void metrics_escape_label(const char *value, char *out, size_t cap);

#endif

/* Counters and the query-latency histogram behind GET /metrics. */
#ifndef PGTANDEM_METRICS_H
#define PGTANDEM_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define LATENCY_BUCKETS 16

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
};

void metrics_record_latency(struct metrics *m, uint64_t us);
/* Approximate p99 in milliseconds over the recent window (0 when empty). */
double metrics_recent_p99_ms(const struct metrics *m);
/* Halves the recent window: called once a second so old samples fade. */
void metrics_decay_window(struct metrics *m);
/* Appends Prometheus text exposition to buf; returns bytes written. */
struct evbuffer;
void metrics_write_prometheus(const struct metrics *m, uint32_t connections, int paused, struct evbuffer *out);
/* pgtandem_held_sessions, pgtandem_fenced and pgtandem_hold{reason=...}:
 * reason is one word (pause.h: pause_hold_info). */
void metrics_write_holds(uint32_t held, int fenced, const char *reason, struct evbuffer *out);

#endif

/* Unit tests for the metrics helpers: histogram buckets (cumulative, +Inf,
 * sum and count, labels), label-value escaping, and the hold series (one
 * per known reason, the one that holds carrying the count). */
#include <event2/buffer.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "unit.h"

static char *text_of(struct evbuffer *out)
{
    size_t n = evbuffer_get_length(out);
    char *s = malloc(n + 1);
    evbuffer_remove(out, s, n);
    s[n] = '\0';
    return s;
}

static void test_histogram(void)
{
    static const double bounds[] = {0.01, 0.1, 1};
    struct histogram h;
    histogram_init(&h, bounds, 3);
    histogram_observe(&h, 0.005);
    histogram_observe(&h, 0.01); /* on a bound: that bucket (le) */
    histogram_observe(&h, 0.5);
    histogram_observe(&h, 7);
    CHECK("histogram: count", histogram_count(&h) == 4);
    struct evbuffer *out = evbuffer_new();
    metrics_write_histogram(out, "x_seconds", "m=\"a\"", &h);
    char *s = text_of(out);
    CHECK("histogram: cumulative buckets with labels",
          strstr(s, "x_seconds_bucket{m=\"a\",le=\"0.01\"} 2\n") && strstr(s, "x_seconds_bucket{m=\"a\",le=\"0.1\"} 2\n") &&
              strstr(s, "x_seconds_bucket{m=\"a\",le=\"1\"} 3\n") && strstr(s, "x_seconds_bucket{m=\"a\",le=\"+Inf\"} 4\n"));
    CHECK("histogram: sum and count", strstr(s, "x_seconds_sum{m=\"a\"} 7.515000\n") &&
                                          strstr(s, "x_seconds_count{m=\"a\"} 4\n"));
    free(s);
    histogram_init(&h, bounds, 3);
    metrics_write_histogram(out, "y", "", &h);
    s = text_of(out);
    CHECK("histogram: no labels, empty", strstr(s, "y_bucket{le=\"0.01\"} 0\n") && strstr(s, "y_sum 0.000000\n") &&
                                             strstr(s, "y_count 0\n"));
    free(s);
    evbuffer_free(out);
}

static void test_escape(void)
{
    char out[32];
    metrics_escape_label("a\"b\\c\nd", out, sizeof out);
    CHECK("escape: quote, backslash, newline", strcmp(out, "a\\\"b\\\\c\\nd") == 0);
    metrics_escape_label("0123456789abcdefghij", out, 8);
    CHECK("escape: cut to fit", strlen(out) < 8);
    metrics_escape_label(NULL, out, sizeof out);
    CHECK("escape: NULL is empty", out[0] == '\0');
}

static void test_holds(void)
{
    struct evbuffer *out = evbuffer_new();
    metrics_write_holds(3, 1, "fence", out);
    char *s = text_of(out);
    CHECK("holds: the fence carries the count", strstr(s, "pgtandem_held_sessions{reason=\"fence\"} 3\n") &&
                                                    strstr(s, "pgtandem_held_sessions{reason=\"cutover\"} 0\n"));
    CHECK("holds: active by reason", strstr(s, "pgtandem_hold_active{reason=\"fence\"} 1\n") &&
                                         strstr(s, "pgtandem_hold_active{reason=\"operator_pause\"} 0\n"));
    CHECK("holds: fenced", strstr(s, "pgtandem_fenced 1\n") != NULL);
    free(s);
    metrics_write_holds(0, 0, "none", out);
    s = text_of(out);
    CHECK("holds: none holds, every reason 0", !strstr(s, "} 1\npgtandem_fenced") &&
                                                   strstr(s, "pgtandem_hold_active{reason=\"fence\"} 0\n") &&
                                                   !strstr(s, "reason=\"none\"} 0"));
    free(s);
    metrics_write_holds(2, 0, "new_kind", out);
    s = text_of(out);
    CHECK("holds: an unknown kind still gets its series",
          strstr(s, "pgtandem_held_sessions{reason=\"new_kind\"} 2\n") &&
              strstr(s, "pgtandem_hold_active{reason=\"new_kind\"} 1\n"));
    free(s);
    evbuffer_free(out);
}

/* The budget's finer per-route histogram: a window is the difference of
 * two readings, and its p99 is within one 10% step of the real one. */
static void test_fine_latency(void)
{
    struct metrics m;
    memset(&m, 0, sizeof m);
    for (int i = 0; i < 99; i++)
        metrics_record_latency(&m, 5000, LATENCY_ROUTE_OLD);
    metrics_record_latency(&m, 40000, LATENCY_ROUTE_OLD);
    uint64_t n = 0;
    double p99 = latency_fine_quantile_ms(&m.route_latency[0], NULL, 0.99, &n);
    CHECK("fine: p99 of 100 is the 99th", n == 100 && p99 >= 5.0 && p99 < 5.5);
    double p100 = latency_fine_quantile_ms(&m.route_latency[0], NULL, 1.0, NULL);
    CHECK("fine: the max within a step", p100 >= 40.0 && p100 < 44.0);
    struct latency_fine before = m.route_latency[0];
    for (int i = 0; i < 50; i++)
        metrics_record_latency(&m, 12000, LATENCY_ROUTE_OLD);
    p99 = latency_fine_quantile_ms(&m.route_latency[0], &before, 0.99, &n);
    CHECK("fine: a window holds only what came after", n == 50 && p99 >= 12.0 && p99 < 13.2);
    CHECK("fine: the routes apart", latency_fine_quantile_ms(&m.route_latency[1], NULL, 0.99, &n) == 0 && n == 0);
    metrics_record_latency(&m, 100000000, LATENCY_ROUTE_NEW);
    CHECK("fine: past the last bound", latency_fine_quantile_ms(&m.route_latency[1], NULL, 0.99, NULL) > 10000);
    CHECK("fine: the coarse histogram counts them too", m.queries_total == 151);
}

/* Every latency, from below the first bound to past the last, lands in the
 * one bucket whose bound is the first at or above it (read back through a
 * p100 of that one sample), checked against the closed formula. */
static void test_fine_buckets(void)
{
    int bad = 0;
    for (uint64_t us = 1; us < 40000000; us += 1 + us / 97) {
        struct metrics m;
        memset(&m, 0, sizeof m);
        metrics_record_latency(&m, us, LATENCY_ROUTE_OLD);
        double got_ms = latency_fine_quantile_ms(&m.route_latency[0], NULL, 1.0, NULL);
        int i = 0;
        while (i < LATENCY_FINE_BUCKETS && LATENCY_FINE_MIN_US * pow(LATENCY_FINE_STEP, i) < (double)us)
            i++;
        double want_ms = LATENCY_FINE_MIN_US * pow(LATENCY_FINE_STEP, i) / 1000.0;
        if (fabs(got_ms - want_ms) > want_ms * 1e-9)
            bad++;
    }
    CHECK("fine: each latency in the first bucket whose bound is at or above it", bad == 0);
}

int main(void)
{
    test_fine_latency();
    test_fine_buckets();
    test_histogram();
    test_escape();
    test_holds();
    return UNIT_RESULT();
}

/* Unit tests for the metrics helpers: histogram buckets (cumulative, +Inf,
 * sum and count, labels), label-value escaping, and the hold series (one
 * per known reason, the one that holds carrying the count). */
#include <event2/buffer.h>
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

int main(void)
{
    test_histogram();
    test_escape();
    test_holds();
    return UNIT_RESULT();
}

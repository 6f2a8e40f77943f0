/* Per-source token buckets for unauthenticated failures, and the log lines
 * they would otherwise write (see source_limit.h). */
#include "source_limit.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"

#define SOURCE_TABLE 256         /* recent sources kept; the longest unseen makes room */
#define LINE_INTERVAL_US 1000000 /* a source logs at most a line a second */
#define LOG_BURST 20             /* lines the whole table may log at once... */
#define LOG_RATE 5.0             /* ...and per second after that */
#define SUMMARY_SOURCES 8        /* sources named in one summary; the rest are summed */

struct source {
    int family;              /* AF_INET, AF_INET6 (a /64), AF_UNIX; 0: free */
    unsigned char addr[8];   /* the IPv4 address or the IPv6 prefix */
    char name[48];           /* for the log */
    double tokens;
    uint64_t refilled_us;    /* tokens counted up to here */
    uint64_t seen_us;        /* last event: the longest unseen is replaced */
    uint64_t logged_us;      /* last line about it */
    uint32_t unlogged[SOURCE_EVENTS];
};

struct source_limits {
    struct relay *relay;
    struct source table[SOURCE_TABLE];
    double log_tokens;
    uint64_t log_refilled_us;
    uint32_t evicted[SOURCE_EVENTS];  /* unlogged counts of sources that lost their place */
    uint32_t evicted_sources;
    struct event *summary_timer;
    int summary_due;
};

static const char *const event_names[SOURCE_EVENTS] = {
    "cancel requests for unknown sessions", "cancel requests forwarded", "bad startup packets",
    "peer messages refused", "cancel requests refused over the rate limit"};

static void summary_cb(evutil_socket_t fd, short what, void *arg);

static struct source_limits *limits_of(struct relay *relay)
{
    if (relay->limits)
        return relay->limits;
    struct source_limits *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    if (!(l->summary_timer = evtimer_new(relay->base, summary_cb, l))) {
        free(l);
        return NULL;
    }
    l->relay = relay;
    l->log_tokens = LOG_BURST;
    relay->limits = l;
    return l;
}

/* "1.2.3.4:5", "[::1]:5", "::1:5" (the session's form) or "unix". */
static void parse_source(const char *text, struct source *out)
{
    char host[64];
    snprintf(host, sizeof host, "%s", text);
    char *colon = strrchr(host, ':');
    if (colon && colon != host)
        *colon = '\0';
    char *h = host;
    if (h[0] == '[') {
        h++;
        h[strcspn(h, "]")] = '\0';
    }
    memset(out, 0, sizeof *out);
    unsigned char a[16];
    if (inet_pton(AF_INET, h, a) == 1) {
        out->family = AF_INET;
        memcpy(out->addr, a, 4);
        inet_ntop(AF_INET, a, out->name, sizeof out->name);
    } else if (inet_pton(AF_INET6, h, a) == 1) {
        out->family = AF_INET6;
        memcpy(out->addr, a, 8);
        memset(a + 8, 0, 8);
        inet_ntop(AF_INET6, a, out->name, sizeof out->name - 4);
        strcat(out->name, "/64");
    } else {
        out->family = AF_UNIX;
        snprintf(out->name, sizeof out->name, "unix");
    }
}

static double rate_of(const struct relay *relay)
{
    return relay->cfg.source_failures_per_s > 0 ? relay->cfg.source_failures_per_s : 1;
}

static void refill(const struct relay *relay, struct source *s, uint64_t now)
{
    double rate = rate_of(relay);
    s->tokens += (double)(now - s->refilled_us) / 1e6 * rate;
    if (s->tokens > rate * SOURCE_BURST_S)
        s->tokens = rate * SOURCE_BURST_S;
    s->refilled_us = now;
}

static void forget(struct source_limits *l, struct source *s)
{
    int had = 0;
    for (int i = 0; i < SOURCE_EVENTS; i++) {
        l->evicted[i] += s->unlogged[i];
        had |= s->unlogged[i] != 0;
    }
    l->evicted_sources += had;
}

/* The entry for addr: found, or a fresh one (full bucket) in place of the
 * one seen longest ago. */
static struct source *find_source(struct source_limits *l, const char *addr, uint64_t now)
{
    struct source key;
    parse_source(addr, &key);
    struct source *oldest = &l->table[0];
    for (size_t i = 0; i < SOURCE_TABLE; i++) {
        struct source *s = &l->table[i];
        if (s->family == key.family && memcmp(s->addr, key.addr, sizeof key.addr) == 0) {
            refill(l->relay, s, now);
            s->seen_us = now;
            return s;
        }
        if (!s->family || (oldest->family && s->seen_us < oldest->seen_us))
            oldest = s;
    }
    if (oldest->family)
        forget(l, oldest);
    *oldest = key;
    oldest->tokens = rate_of(l->relay) * SOURCE_BURST_S;
    oldest->refilled_us = oldest->seen_us = now;
    oldest->logged_us = 0;
    return oldest;
}

static void count_unlogged(struct source_limits *l, struct source *s, enum source_event ev)
{
    s->unlogged[ev]++;
    if (!l->summary_due) {
        struct timeval tv = {1, 0};
        l->summary_due = evtimer_add(l->summary_timer, &tv) == 0;
    }
}

int source_limit_allows(struct relay *relay, const char *addr)
{
    struct source_limits *l = limits_of(relay);
    if (!l)
        return 1;
    struct source *s = find_source(l, addr, relay_now_us(relay));
    if (s->tokens >= 1)
        return 1;
    count_unlogged(l, s, SOURCE_THROTTLED);
    return 0;
}

static int may_log(struct source_limits *l, struct source *s, uint64_t now)
{
    if (s->logged_us && now - s->logged_us < LINE_INTERVAL_US)
        return 0;
    l->log_tokens += (double)(now - l->log_refilled_us) / 1e6 * LOG_RATE;
    if (l->log_tokens > LOG_BURST)
        l->log_tokens = LOG_BURST;
    l->log_refilled_us = now;
    if (l->log_tokens < 1)
        return 0;
    l->log_tokens -= 1;
    s->logged_us = now;
    return 1;
}

int source_limit_failure(struct relay *relay, const char *addr, enum source_event ev, int charge, const char *fmt, ...)
{
    struct source_limits *l = limits_of(relay);
    uint64_t now = relay_now_us(relay);
    struct source *s = l ? find_source(l, addr, now) : NULL;
    int under = 1;
    if (s && charge) {
        under = s->tokens >= 1;
        if (under)
            s->tokens -= 1;
    }
    if (!s || may_log(l, s, now)) {
        char line[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(line, sizeof line, fmt, ap);
        va_end(ap);
        log_info("%s", line);
    } else {
        count_unlogged(l, s, ev);
    }
    return under;
}

/* "12 cancel requests for unknown sessions, 3 bad startup packets" */
static void describe_counts(const uint32_t *counts, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < SOURCE_EVENTS && used < cap; i++) {
        if (!counts[i])
            continue;
        int n = snprintf(out + used, cap - used, "%s%u %s", used ? ", " : "", counts[i], event_names[i]);
        if (n < 0)
            return;
        used += (size_t)n;
    }
}

static void log_summary(struct source_limits *l)
{
    uint64_t now = relay_now_us(l->relay);
    uint32_t rest[SOURCE_EVENTS] = {0};
    uint32_t rest_sources = l->evicted_sources, named = 0;
    memcpy(rest, l->evicted, sizeof rest);
    char what[400];
    for (size_t i = 0; i < SOURCE_TABLE; i++) {
        struct source *s = &l->table[i];
        uint32_t total = 0;
        for (int e = 0; e < SOURCE_EVENTS; e++)
            total += s->unlogged[e];
        if (!total)
            continue;
        if (named < SUMMARY_SOURCES) {
            describe_counts(s->unlogged, what, sizeof what);
            log_info("from %s, not logged one by one: %s", s->name, what);
            named++;
        } else {
            for (int e = 0; e < SOURCE_EVENTS; e++)
                rest[e] += s->unlogged[e];
            rest_sources++;
        }
        memset(s->unlogged, 0, sizeof s->unlogged);
        s->logged_us = now;
    }
    if (rest_sources) {
        describe_counts(rest, what, sizeof what);
        log_info("from %u other sources, not logged one by one: %s", rest_sources, what);
    }
    memset(l->evicted, 0, sizeof l->evicted);
    l->evicted_sources = 0;
}

static void summary_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct source_limits *l = arg;
    l->summary_due = 0;
    log_summary(l);
}

void source_limits_free(struct relay *relay)
{
    struct source_limits *l = relay->limits;
    if (!l)
        return;
    log_summary(l);
    event_free(l->summary_timer);
    free(l);
    relay->limits = NULL;
}

/* The few functions every relay module shares through struct relay:
 * the clock, the end of a session (and the heap trim after many), the
 * wake-up of a pause, and the version route. Nothing here knows sessions,
 * pause or the engine by name. */
#include "relay.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "log.h"

/* glibc keeps what a burst of sessions freed (buffers, TLS state, the
 * sessions): the next ones reuse it, but it stays resident meanwhile, and
 * the top of the heap is rarely free to shrink, since what lives long
 * (pools, their servers) sits above it. So once HEAP_TRIM_MIN_CLOSED
 * sessions have closed since the last trim and none has for
 * HEAP_TRIM_QUIET_MS, malloc_trim(0) hands the free pages back. It walks
 * the free lists, madvising whole free pages: about 1 ms after a thousand
 * sessions, 13 ms after 18,000 TLS ones, once. No mallopt: a fixed
 * M_TRIM_THRESHOLD only trims the top of the heap (and turns off glibc's
 * adaptive thresholds), and the loop is one thread (the engine worker's
 * arena, when it runs, is trimmed by the same call). */
#define HEAP_TRIM_MIN_CLOSED 256
#define HEAP_TRIM_QUIET_MS 1000

uint32_t relay_session_count(const struct relay *relay)
{
    return session_counts_total(&relay->counts);
}

/* The loop's cached clock is only as fine as CLOCK_MONOTONIC_COARSE
 * (jiffies), too coarse for sub-millisecond query latencies. */
uint64_t relay_now_us(const struct relay *relay)
{
    (void)relay;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int relay_lease_expired(const struct relay *relay)
{
    return relay->lease_deadline_us && relay_now_us(relay) > relay->lease_deadline_us;
}

int relay_fence_overdue(struct relay *relay)
{
    if (!relay->fence_bound_ms || !relay_lease_expired(relay))
        return 0;
    uint64_t now = relay_now_us(relay);
    if (relay->fence_seen_us < relay->lease_deadline_us) /* not seen since this lease ran out */
        relay->fence_seen_us = now;
    return now > relay->fence_seen_us + (uint64_t)relay->fence_bound_ms * 1000u;
}

/* Resident memory in kB (0: unknown), for the log. */
static long resident_kb(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static void heap_trim_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct relay *relay = arg;
    uint32_t closed = relay->closed_since_trim;
    relay->closed_since_trim = 0;
    long before = resident_kb();
    uint64_t start = relay_now_us(relay);
#ifdef __GLIBC__
    malloc_trim(0);
#endif
    log_debug("heap trimmed after %u sessions closed: resident %ld kB -> %ld kB, %.1f ms", closed, before,
              resident_kb(), (double)(relay_now_us(relay) - start) / 1000.0);
}

int relay_start_heap_trim(struct relay *relay)
{
    relay->heap_trim = evtimer_new(relay->base, heap_trim_cb, relay);
    return relay->heap_trim ? 0 : -1;
}

void relay_session_closed(struct relay *relay)
{
    if (relay->shutting_down && relay_session_count(relay) == 0) {
        log_info("shutdown: all sessions finished");
        event_base_loopexit(relay->base, NULL);
    }
    /* pushed back by every close: it fires once they stop */
    struct timeval quiet = {HEAP_TRIM_QUIET_MS / 1000, (HEAP_TRIM_QUIET_MS % 1000) * 1000};
    if (++relay->closed_since_trim >= HEAP_TRIM_MIN_CLOSED && relay->heap_trim)
        evtimer_add(relay->heap_trim, &quiet);
}

void relay_boundary_reached(struct relay *relay)
{
    if (relay->pause.paused && relay->pause.check_ev)
        event_active(relay->pause.check_ev, EV_TIMEOUT, 0);
}

const char *relay_version_schema(const struct relay *relay, const char *version)
{
    const struct version_route *r = &relay->route;
    if (r->n == 0)
        return NULL;
    const char *path = r->paths[version_route_index(r, version) + 1];
    return path[0] ? path : NULL;
}

int relay_bound_port(evutil_socket_t fd, int configured)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return configured;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return configured;
}

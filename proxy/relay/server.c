/* The few functions every relay module shares through the server struct:
 * the clock, the end of a session (and the heap trim after many), the
 * wake-up of a pause, and the version route. Nothing here knows sessions,
 * pause or the engine by name. */
#include "server.h"

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

uint32_t server_session_count(const struct server *srv)
{
    return session_counts_total(&srv->counts);
}

/* The loop's cached clock is only as fine as CLOCK_MONOTONIC_COARSE
 * (jiffies), too coarse for sub-millisecond query latencies. */
uint64_t server_now_us(struct server *srv)
{
    (void)srv;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int server_lease_expired(const struct server *srv)
{
    return srv->lease_deadline_us && server_now_us((struct server *)srv) > srv->lease_deadline_us;
}

int server_fence_overdue(struct server *srv)
{
    if (!srv->fence_bound_ms || !server_lease_expired(srv))
        return 0;
    uint64_t now = server_now_us(srv);
    if (srv->fence_seen_us < srv->lease_deadline_us) /* not seen since this lease ran out */
        srv->fence_seen_us = now;
    return now > srv->fence_seen_us + (uint64_t)srv->fence_bound_ms * 1000u;
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
    struct server *srv = arg;
    uint32_t closed = srv->closed_since_trim;
    srv->closed_since_trim = 0;
    long before = resident_kb();
    uint64_t start = server_now_us(srv);
#ifdef __GLIBC__
    malloc_trim(0);
#endif
    log_debug("heap trimmed after %u sessions closed: resident %ld kB -> %ld kB, %.1f ms", closed, before,
              resident_kb(), (double)(server_now_us(srv) - start) / 1000.0);
}

int server_start_heap_trim(struct server *srv)
{
    srv->heap_trim = evtimer_new(srv->base, heap_trim_cb, srv);
    return srv->heap_trim ? 0 : -1;
}

void server_session_closed(struct server *srv)
{
    if (srv->shutting_down && server_session_count(srv) == 0) {
        log_info("shutdown: all sessions finished");
        event_base_loopexit(srv->base, NULL);
    }
    /* pushed back by every close: it fires once they stop */
    struct timeval quiet = {HEAP_TRIM_QUIET_MS / 1000, (HEAP_TRIM_QUIET_MS % 1000) * 1000};
    if (++srv->closed_since_trim >= HEAP_TRIM_MIN_CLOSED && srv->heap_trim)
        evtimer_add(srv->heap_trim, &quiet);
}

void server_boundary_reached(struct server *srv)
{
    if (srv->pause.paused && srv->pause.check_ev)
        event_active(srv->pause.check_ev, EV_TIMEOUT, 0);
}

const char *server_version_schema(const struct server *srv, const char *version)
{
    const struct version_route *r = &srv->route;
    if (!r->version[0])
        return NULL;
    if (version && !strcmp(version, r->version) && r->new_schema[0])
        return r->new_schema;
    return r->old_schema[0] ? r->old_schema : NULL;
}

int server_bound_port(evutil_socket_t fd, int configured)
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

/* The few functions every relay module shares through the server struct:
 * the clock, the end of a session, the wake-up of a pause, and the version
 * route. Nothing here knows sessions, pause or the engine by name. */
#include "server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <time.h>

#include "log.h"

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

void server_session_closed(struct server *srv)
{
    if (srv->shutting_down && server_session_count(srv) == 0) {
        log_info("shutdown: all sessions finished");
        event_base_loopexit(srv->base, NULL);
    }
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

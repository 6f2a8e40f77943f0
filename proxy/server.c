/* bin/pgtandem proxy: builds the server struct from the configuration,
 * opens the listeners and the admin API, handles signals, and runs the one
 * event loop until SIGTERM has let every session finish. */
#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "cli.h"
#include "log.h"
#include "migration_runner.h"
#include "server.h"
#include "session.h"
#include "scram.h"
#include "tls.h"
#include "users.h"

#define LISTEN_BACKLOG 4096

/* The loop's cached clock is only as fine as CLOCK_MONOTONIC_COARSE
 * (jiffies), too coarse for sub-millisecond query latencies. */
uint64_t server_now_us(struct server *srv)
{
    (void)srv;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void server_session_closed(struct server *srv)
{
    if (srv->shutting_down && srv->session_count == 0) {
        log_info("shutdown: all sessions finished");
        event_base_loopexit(srv->base, NULL);
    }
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *addr, int len, void *arg)
{
    (void)l;
    session_accept(arg, fd, addr, len);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    (void)l;
    (void)arg;
    int err = EVUTIL_SOCKET_ERROR();
    log_error("accept failed: %s", evutil_socket_error_to_string(err));
}

static int listen_tcp(struct server *srv, char *err, size_t errlen)
{
    struct evutil_addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = EVUTIL_AI_PASSIVE;
    char port[16];
    snprintf(port, sizeof port, "%d", srv->cfg.listen_port);
    const char *host = srv->cfg.listen_host[0] ? srv->cfg.listen_host : NULL;
    int gai = evutil_getaddrinfo(host, port, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "listen address %s: %s", srv->cfg.listen_host, evutil_gai_strerror(gai));
        return -1;
    }
    /* SO_REUSEPORT: several proxy processes can share the port to scale out. */
    srv->tcp_listener = evconnlistener_new_bind(srv->base, accept_cb, srv,
                                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                                    LEV_OPT_REUSEABLE_PORT | LEV_OPT_CLOSE_ON_EXEC,
                                                LISTEN_BACKLOG, res->ai_addr, (int)res->ai_addrlen);
    evutil_freeaddrinfo(res);
    if (!srv->tcp_listener) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", srv->cfg.listen_host, srv->cfg.listen_port,
                 strerror(errno));
        return -1;
    }
    evconnlistener_set_error_cb(srv->tcp_listener, accept_error_cb);
    return 0;
}

/* Like Postgres: DIR/.s.PGSQL.PORT, so `psql -h DIR -p PORT` finds it. */
static int listen_unix(struct server *srv, char *err, size_t errlen)
{
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    int n = snprintf(sun.sun_path, sizeof sun.sun_path, "%s/.s.PGSQL.%d", srv->cfg.unix_socket_dir,
                     srv->cfg.listen_port);
    if (n < 0 || (size_t)n >= sizeof sun.sun_path) {
        snprintf(err, errlen, "unix socket path too long");
        return -1;
    }
    unlink(sun.sun_path);
    srv->unix_listener = evconnlistener_new_bind(srv->base, accept_cb, srv, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                                 LISTEN_BACKLOG, (struct sockaddr *)&sun, sizeof sun);
    if (!srv->unix_listener) {
        snprintf(err, errlen, "cannot listen on %s: %s", sun.sun_path, strerror(errno));
        return -1;
    }
    chmod(sun.sun_path, 0777);
    srv->unix_socket_path = strdup(sun.sun_path);
    return 0;
}

static void close_listeners(struct server *srv)
{
    if (srv->tcp_listener)
        evconnlistener_free(srv->tcp_listener);
    if (srv->unix_listener)
        evconnlistener_free(srv->unix_listener);
    srv->tcp_listener = srv->unix_listener = NULL;
    if (srv->unix_socket_path) {
        unlink(srv->unix_socket_path);
        free(srv->unix_socket_path);
        srv->unix_socket_path = NULL;
    }
}

static void shutdown_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct server *srv = arg;
    log_warn("shutdown: %u sessions still open after the timeout; closing them", srv->session_count);
    while (srv->sessions)
        session_free(srv->sessions);
    event_base_loopexit(srv->base, NULL);
}

static void begin_shutdown(struct server *srv)
{
    if (srv->shutting_down)
        return;
    srv->shutting_down = 1;
    log_info("shutdown: no new connections; %u sessions finish their transactions (timeout %d s)",
             srv->session_count, srv->cfg.shutdown_timeout_ms / 1000);
    close_listeners(srv);
    if (srv->pause.paused)
        pause_resume(srv);
    for (struct session *s = srv->sessions, *next; s; s = next) {
        next = s->next;
        session_end_at_boundary(s);
    }
    if (srv->session_count == 0) {
        event_base_loopexit(srv->base, NULL);
        return;
    }
    srv->shutdown_timer = evtimer_new(srv->base, shutdown_timeout_cb, srv);
    struct timeval tv = {srv->cfg.shutdown_timeout_ms / 1000, (srv->cfg.shutdown_timeout_ms % 1000) * 1000};
    evtimer_add(srv->shutdown_timer, &tv);
}

/* SCRAM-SHA-256-PLUS binds to the certificate clients see. */
static void remember_channel_binding(struct server *srv)
{
    X509 *cert = srv->client_tls ? SSL_CTX_get0_certificate(srv->client_tls) : NULL;
    srv->cb_len = 0;
    if (cert && scram_tls_server_end_point(cert, srv->cb_data, &srv->cb_len) != SCRAM_OK)
        srv->cb_len = 0;
}

static void reload(struct server *srv)
{
    char err[512];
    if (config_reload(&srv->cfg, err, sizeof err) != 0) {
        log_error("reload: %s (keeping the running configuration)", err);
        return;
    }
    log_set_level(srv->cfg.log_level);
    if (srv->cfg.tls_cert) {
        SSL_CTX *fresh = tls_client_side_ctx(&srv->cfg, err, sizeof err);
        if (!fresh) {
            log_error("reload: %s (keeping the old certificate)", err);
            return;
        }
        /* Sessions already on TLS keep a reference to the old context. */
        SSL_CTX_free(srv->client_tls);
        srv->client_tls = fresh;
        remember_channel_binding(srv);
    }
    if (srv->cfg.auth_scram) {
        struct users *fresh_users = NULL;
        if (users_load(srv->cfg.users_file, &fresh_users, err, sizeof err) != 0) {
            log_error("reload: %s (keeping the old users)", err);
        } else {
            users_free(srv->users);
            srv->users = fresh_users;
        }
    }
    log_info("reload: configuration and TLS certificate reloaded");
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct server *srv = arg;
    if (sig == SIGHUP)
        reload(srv);
    else
        begin_shutdown(srv);
}

/* The recent-latency window behind the backfill throttle fades each second. */
static void metrics_tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct server *srv = arg;
    metrics_decay_window(&srv->metrics);
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int server_init(struct server *srv, char *err, size_t errlen)
{
    /* The changelist folds the add/delete of write interest that every
     * relayed message causes into one epoll_ctl per loop turn. */
    struct event_config *ec = event_config_new();
    if (ec)
        event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    srv->base = ec ? event_base_new_with_config(ec) : NULL;
    if (ec)
        event_config_free(ec);
    if (!srv->base) {
        snprintf(err, errlen, "cannot create the event loop");
        return -1;
    }
    srv->dns = evdns_base_new(srv->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
    if (!srv->dns)
        srv->dns = evdns_base_new(srv->base, 0); /* no resolv.conf: IP addresses still work */
    if (srv->cfg.tls_cert && !(srv->client_tls = tls_client_side_ctx(&srv->cfg, err, errlen)))
        return -1;
    remember_channel_binding(srv);
    if (srv->cfg.auth_scram) {
        if (users_load(srv->cfg.users_file, &srv->users, err, errlen) != 0)
            return -1;
        if (RAND_bytes(srv->mock_secret, sizeof srv->mock_secret) != 1) {
            snprintf(err, errlen, "no randomness for the mock authentication secret");
            return -1;
        }
    }
    if (srv->cfg.upstream_tls != UPSTREAM_TLS_DISABLE && !(srv->upstream_tls = tls_upstream_ctx(&srv->cfg, err, errlen)))
        return -1;
    upstream_address_init(srv);
    if (listen_tcp(srv, err, errlen) != 0)
        return -1;
    if (srv->cfg.unix_socket_dir && listen_unix(srv, err, errlen) != 0)
        return -1;
    if (srv->cfg.admin_port && !(srv->admin = admin_start(srv, err, errlen)))
        return -1;
    srv->runner = runner_new(srv);
    srv->metrics_timer = event_new(srv->base, -1, EV_PERSIST, metrics_tick_cb, srv);
    struct timeval second = {1, 0};
    if (srv->metrics_timer)
        event_add(srv->metrics_timer, &second);
    srv->sigterm = evsignal_new(srv->base, SIGTERM, signal_cb, srv);
    srv->sigint = evsignal_new(srv->base, SIGINT, signal_cb, srv);
    srv->sighup = evsignal_new(srv->base, SIGHUP, signal_cb, srv);
    evsignal_add(srv->sigterm, NULL);
    evsignal_add(srv->sigint, NULL);
    evsignal_add(srv->sighup, NULL);
    return 0;
}

static void server_free(struct server *srv)
{
    while (srv->sessions)
        session_free(srv->sessions);
    close_listeners(srv);
    runner_free(srv->runner);
    admin_free(srv->admin);
    pause_free(srv);
    upstream_address_free(srv);
    struct event *events[] = {srv->sigterm, srv->sigint, srv->sighup, srv->shutdown_timer, srv->metrics_timer};
    for (size_t i = 0; i < sizeof events / sizeof events[0]; i++)
        if (events[i])
            event_free(events[i]);
    if (srv->dns)
        evdns_base_free(srv->dns, 0);
    SSL_CTX_free(srv->client_tls);
    SSL_CTX_free(srv->upstream_tls);
    if (srv->users)
        users_free(srv->users);
    OPENSSL_cleanse(srv->mock_secret, sizeof srv->mock_secret);
    if (srv->base)
        event_base_free(srv->base);
    config_free(&srv->cfg);
}

int proxy_main(int argc, char **argv)
{
    struct server srv;
    memset(&srv, 0, sizeof srv);
    config_init(&srv.cfg);
    char err[1024];
    if (config_from_args(&srv.cfg, argc, argv, err, sizeof err) != 0) {
        fprintf(stderr, "pgtandem proxy: %s\n", err);
        config_free(&srv.cfg);
        return 2;
    }
    log_set_level(srv.cfg.log_level);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    if (server_init(&srv, err, sizeof err) != 0) {
        log_error("%s", err);
        server_free(&srv);
        return 1;
    }
    log_info("pgtandem proxy listening on %s:%d%s%s, upstream %s:%d (tls %s), admin %s:%d", srv.cfg.listen_host,
             srv.cfg.listen_port, srv.unix_socket_path ? " and " : "", srv.unix_socket_path ? srv.unix_socket_path : "",
             srv.cfg.upstream_host, srv.cfg.upstream_port, srv.upstream_tls ? "on" : "off", srv.cfg.admin_host,
             srv.cfg.admin_port);
    event_base_dispatch(srv.base);
    log_info("pgtandem proxy stopped");
    server_free(&srv);
    return 0;
}

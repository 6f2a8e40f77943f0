/* bin/pgtandem proxy: the composition root. Builds struct relay (the
 * relay) from the configuration, opens the listeners, starts the engine and
 * the admin API and wires them together, handles signals, and runs the one
 * event loop until SIGTERM has let every session finish. The only module
 * that knows the relay, the engine and the admin API at once. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
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
#include <unistd.h>

#include "admin.h"
#include "admin_migrations.h"
#include "auth_lookup.h"
#include "cli.h"
#include "compiler.h"
#include "log.h"
#include "fleet.h"
#include "migration_metrics.h"
#include "migration_runner.h"
#include "pause.h"
#include "pool.h"
#include "peer.h"
#include "proto.h"
#include "scram.h"
#include "relay.h"
#include "session.h"
#include "source_limit.h"
#include "tls.h"
#include "upstream.h"
#include "users.h"
#include "version_gate.h"

#define LISTEN_BACKLOG 4096
/* Out of descriptors: stop accepting this long, then try again (PgBouncer
 * waits the same way), and log it once per interval, not once per try. */
#define ACCEPT_RETRY_MS 1000
#define ACCEPT_LOG_INTERVAL_US 10000000u

/* The process: struct relay and what the composition root
 * owns besides it. */
struct proxy {
    struct relay relay;
    struct admin *admin;
    struct migration_runner *runner;
    struct fleet *fleet;            /* with an engine connection only */
    struct event *sigterm, *sigint, *sighup;
    struct event *shutdown_timer;
    struct event *metrics_timer;
};

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *addr, int len, void *arg)
{
    (void)l;
    session_accept(arg, fd, addr, len);
}

/* Returns how many listeners failed to change. */
static PGT_MUSTCHECK int set_accepting(struct relay *relay, int on)
{
    struct evconnlistener *ls[] = {relay->tcp_listener, relay->unix_listener, relay->fleet.listener};
    int failed = 0;
    for (size_t i = 0; i < sizeof ls / sizeof ls[0]; i++)
        if (ls[i])
            failed += (on ? evconnlistener_enable(ls[i]) : evconnlistener_disable(ls[i])) != 0;
    return failed;
}

static void arm_accept_retry(struct relay *relay)
{
    struct timeval tv = {ACCEPT_RETRY_MS / 1000, (ACCEPT_RETRY_MS % 1000) * 1000};
    if (evtimer_add(relay->accept_retry, &tv) != 0)
        log_error("could not set the accept retry timer");
}

static void accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    /* After a shutdown began only the peer listener is left to enable. */
    if (set_accepting(arg, 1) != 0) {
        log_error("could not accept connections again; retrying in %d ms", ACCEPT_RETRY_MS);
        arm_accept_retry(arg);
    }
}

static int out_of_resources(int err)
{
    return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

/* libevent calls this for every failed accept; without a pause it would
 * retry at once and spin on a full descriptor table. */
static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    (void)l;
    struct relay *relay = arg;
    int err = EVUTIL_SOCKET_ERROR();
    uint64_t now = relay_now_us(relay);
    relay->accept_errors++;
    if (now - relay->accept_error_logged_us >= ACCEPT_LOG_INTERVAL_US || !relay->accept_error_logged_us) {
        log_error("accept failed: %s (%u times since the last report; %u sessions open)%s",
                  evutil_socket_error_to_string(err), relay->accept_errors, relay_session_count(relay),
                  out_of_resources(err) ? "; not accepting for a second" : "");
        relay->accept_error_logged_us = now;
        relay->accept_errors = 0;
    }
    if (!out_of_resources(err) || !relay->accept_retry)
        return;
    /* The retry first: without it, listeners turned off stay off. */
    struct timeval tv = {ACCEPT_RETRY_MS / 1000, (ACCEPT_RETRY_MS % 1000) * 1000};
    if (evtimer_add(relay->accept_retry, &tv) != 0) {
        log_error("could not set the accept retry timer; accepting on");
        return;
    }
    if (set_accepting(relay, 0) != 0)
        log_warn("could not stop accepting for a moment");
}

static int listen_tcp(struct relay *relay, char *err, size_t errlen)
{
    struct evutil_addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = EVUTIL_AI_PASSIVE;
    char port[16];
    snprintf(port, sizeof port, "%d", relay->cfg.listen_port);
    const char *host = relay->cfg.listen_host[0] ? relay->cfg.listen_host : NULL;
    int gai = evutil_getaddrinfo(host, port, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "listen address %s: %s", relay->cfg.listen_host, evutil_gai_strerror(gai));
        return -1;
    }
    /* SO_REUSEPORT: several proxy processes can share the port to scale out. */
    relay->tcp_listener = evconnlistener_new_bind(relay->base, accept_cb, relay,
                                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                                    LEV_OPT_REUSEABLE_PORT | LEV_OPT_CLOSE_ON_EXEC,
                                                LISTEN_BACKLOG, res->ai_addr, (int)res->ai_addrlen);
    evutil_freeaddrinfo(res);
    if (!relay->tcp_listener) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", relay->cfg.listen_host, relay->cfg.listen_port,
                 strerror(errno));
        return -1;
    }
    evconnlistener_set_error_cb(relay->tcp_listener, accept_error_cb);
    /* what the log, the Unix socket's name and the fleet's row show */
    relay->cfg.listen_port = relay_bound_port(evconnlistener_get_fd(relay->tcp_listener), relay->cfg.listen_port);
    return 0;
}

/* Like Postgres: DIR/.s.PGSQL.PORT, so `psql -h DIR -p PORT` finds it. */
static int listen_unix(struct relay *relay, char *err, size_t errlen)
{
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    int n = snprintf(sun.sun_path, sizeof sun.sun_path, "%s/.s.PGSQL.%d", relay->cfg.unix_socket_dir,
                     relay->cfg.listen_port);
    if (n < 0 || (size_t)n >= sizeof sun.sun_path) {
        snprintf(err, errlen, "unix socket path too long");
        return -1;
    }
    unlink(sun.sun_path);
    relay->unix_listener = evconnlistener_new_bind(relay->base, accept_cb, relay, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                                 LISTEN_BACKLOG, (struct sockaddr *)&sun, sizeof sun);
    if (!relay->unix_listener) {
        snprintf(err, errlen, "cannot listen on %s: %s", sun.sun_path, strerror(errno));
        return -1;
    }
    evconnlistener_set_error_cb(relay->unix_listener, accept_error_cb);
    chmod(sun.sun_path, 0777);
    relay->unix_socket_path = strdup(sun.sun_path);
    return 0;
}

static void close_listeners(struct relay *relay)
{
    if (relay->tcp_listener)
        evconnlistener_free(relay->tcp_listener);
    if (relay->unix_listener)
        evconnlistener_free(relay->unix_listener);
    relay->tcp_listener = relay->unix_listener = NULL;
    if (relay->unix_socket_path) {
        unlink(relay->unix_socket_path);
        free(relay->unix_socket_path);
        relay->unix_socket_path = NULL;
    }
}

static void shutdown_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct relay *relay = &((struct proxy *)arg)->relay;
    log_warn("shutdown: %u sessions still open after the timeout; closing them", relay_session_count(relay));
    /* Each client hears why, as from a Postgres stopped with -m fast; the
     * sessions free themselves once the error is on the wire, and what is
     * left after a moment is closed when the loop ends. */
    for (struct session *s = relay->sessions, *next; s; s = next) {
        next = s->next;
        session_fail(s, SQLSTATE_ADMIN_SHUTDOWN,
                     "terminating connection due to administrator command: the proxy is shutting down"
                     " (its --shutdown-timeout of %d s has passed; the open transaction is rolled back)",
                     relay->cfg.shutdown_timeout_ms / 1000);
    }
    struct timeval flush = {0, 200000};
    event_base_loopexit(relay->base, &flush);
}

static void begin_shutdown(struct proxy *p)
{
    struct relay *relay = &p->relay;
    if (relay->shutting_down)
        return;
    relay->shutting_down = 1;
    if (p->fleet)
        fleet_leave(p->fleet);
    log_info("shutdown: no new connections; %u sessions finish their transactions (timeout %d s)",
             relay_session_count(relay), relay->cfg.shutdown_timeout_ms / 1000);
    /* The peer listener stays open: other proxies may still forward cancels
     * for the transactions that are finishing here. */
    close_listeners(relay);
    if (relay->pause.paused)
        pause_resume(relay);
    for (struct session *s = relay->sessions, *next; s; s = next) {
        next = s->next;
        session_end_at_boundary(s);
    }
    if (relay_session_count(relay) == 0) {
        event_base_loopexit(relay->base, NULL);
        return;
    }
    p->shutdown_timer = evtimer_new(relay->base, shutdown_timeout_cb, p);
    struct timeval tv = {relay->cfg.shutdown_timeout_ms / 1000, (relay->cfg.shutdown_timeout_ms % 1000) * 1000};
    if (!p->shutdown_timer || evtimer_add(p->shutdown_timer, &tv) != 0) {
        /* unbounded waiting would keep a stopping proxy alive forever */
        log_error("shutdown: could not set the shutdown timeout; closing the sessions now");
        shutdown_timeout_cb(-1, EV_TIMEOUT, p);
    }
}

/* SCRAM-SHA-256-PLUS binds to the certificate clients see. */
static void remember_channel_binding(struct relay *relay)
{
    X509 *cert = relay->client_tls ? SSL_CTX_get0_certificate(relay->client_tls) : NULL;
    relay->cb_len = 0;
    if (cert && scram_tls_server_end_point(cert, relay->cb_data, &relay->cb_len) != SCRAM_OK)
        relay->cb_len = 0;
}

static void reload(struct relay *relay)
{
    char err[512];
    if (config_reload(&relay->cfg, err, sizeof err) != 0) {
        log_error("reload: %s (keeping the running configuration)", err);
        return;
    }
    log_set_level(relay->cfg.log_level);
    if (relay->cfg.tls_cert) {
        SSL_CTX *fresh = tls_client_side_ctx(&relay->cfg, err, sizeof err);
        if (!fresh) {
            log_error("reload: %s (keeping the old certificate)", err);
            return;
        }
        /* Sessions already on TLS keep a reference to the old context. */
        SSL_CTX_free(relay->client_tls);
        relay->client_tls = fresh;
        remember_channel_binding(relay);
    }
    if (relay->cfg.auth_scram && relay->cfg.users_file) {
        struct users *fresh_users = NULL;
        if (users_load(relay->cfg.users_file, &fresh_users, err, sizeof err) != 0) {
            log_error("reload: %s (keeping the old users)", err);
        } else {
            users_free(relay->users);
            relay->users = fresh_users;
        }
    }
    log_info("reload: configuration and TLS certificate reloaded");
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct proxy *p = arg;
    if (sig == SIGHUP)
        reload(&p->relay);
    else
        begin_shutdown(p);
}

/* The recent-latency window behind the backfill throttle fades each second. */
static void metrics_tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct relay *relay = arg;
    metrics_decay_window(&relay->metrics);
}

/* --pgbouncer-ini: each setting and what it became, so that a team moving
 * from PgBouncer reads what the proxy took from their file. */
static void log_pgbouncer_report(const char *report)
{
    for (const char *p = report; p && *p;) {
        const char *nl = strchr(p, '\n');
        int len = nl ? (int)(nl - p) : (int)strlen(p);
        log_info("pgbouncer.ini: %.*s", len, p);
        p += len + (nl ? 1 : 0);
    }
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int relay_init(struct relay *relay, char *err, size_t errlen)
{
    /* The changelist folds the add/delete of write interest that every
     * relayed message causes into one epoll_ctl per loop turn. */
    struct event_config *ec = event_config_new();
    if (ec)
        event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    relay->base = ec ? event_base_new_with_config(ec) : NULL;
    if (ec)
        event_config_free(ec);
    if (!relay->base) {
        snprintf(err, errlen, "cannot create the event loop");
        return -1;
    }
    relay->dns = evdns_base_new(relay->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
    if (!relay->dns)
        relay->dns = evdns_base_new(relay->base, 0); /* no resolv.conf: IP addresses still work */
    if (relay->cfg.tls_cert && !(relay->client_tls = tls_client_side_ctx(&relay->cfg, err, errlen)))
        return -1;
    remember_channel_binding(relay);
    if (relay->cfg.auth_scram) {
        if (relay->cfg.users_file && users_load(relay->cfg.users_file, &relay->users, err, errlen) != 0)
            return -1;
        struct auth_lookup_limits limits = {relay->cfg.auth_query_cache_ms, relay->cfg.auth_query_timeout_ms,
                                            relay->cfg.auth_query_connections};
        if (relay->cfg.auth_query &&
            !(relay->auth_lookup = auth_lookup_new(relay->base, relay->cfg.auth_query_db, relay->cfg.auth_query,
                                                   &limits))) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        if (RAND_bytes(relay->mock_secret, sizeof relay->mock_secret) != 1) {
            snprintf(err, errlen, "no randomness for the mock authentication secret");
            return -1;
        }
    }
    if (relay->cfg.upstream_tls != UPSTREAM_TLS_DISABLE && !(relay->upstream_tls = tls_upstream_ctx(&relay->cfg, err, errlen)))
        return -1;
    upstream_address_init(relay);
    if (relay->cfg.pool_transaction && pool_start_janitor(relay) != 0) {
        snprintf(err, errlen, "could not set the pool timer");
        return -1;
    }
    if (!(relay->accept_retry = evtimer_new(relay->base, accept_retry_cb, relay)) || relay_start_heap_trim(relay) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (listen_tcp(relay, err, errlen) != 0)
        return -1;
    /* What peers send is cancelled here only: session_cancel never forwards. */
    if (peer_listen(relay, session_cancel, err, errlen) != 0)
        return -1;
    if (relay->fleet.listener)
        evconnlistener_set_error_cb(relay->fleet.listener, accept_error_cb);
    if (relay->cfg.unix_socket_dir && listen_unix(relay, err, errlen) != 0)
        return -1;
    return 0;
}

static struct event *add_signal(struct proxy *p, int sig)
{
    struct event *ev = evsignal_new(p->relay.base, sig, signal_cb, p);
    if (ev && evsignal_add(ev, NULL) != 0) {
        event_free(ev);
        return NULL;
    }
    return ev;
}

/* Every proxy with an engine connection is a member of the database's
 * fleet, under the addresses it serves. */
static int start_fleet(struct proxy *p)
{
    const struct config *cfg = &p->relay.cfg;
    char listen[160], admin[160] = "";
    snprintf(listen, sizeof listen, "%s:%d", cfg->listen_host, cfg->listen_port);
    if (!cfg->admin_off)
        snprintf(admin, sizeof admin, "%s:%d", cfg->admin_host, cfg->admin_port);
    struct fleet_options opt = {cfg->engine_db, cfg->fleet_lease_ms, cfg->fleet_id, listen, admin};
    p->fleet = fleet_new(p->relay.base, &p->relay, &opt);
    return p->fleet ? 0 : -1;
}

static struct json_t *engine_status(void *ctx)
{
    struct proxy *p = ctx;
    return runner_connection_json(p->runner);
}

static struct json_t *fleet_status(void *ctx)
{
    struct proxy *p = ctx;
    return p->fleet ? fleet_status_json(p->fleet) : NULL;
}

/* The engine and the admin API on top of the relay; the admin API reaches
 * the engine through the one route admin_migrations.c adds. */
static int proxy_init(struct proxy *p, char *err, size_t errlen)
{
    struct relay *relay = &p->relay;
    if (relay_init(relay, err, errlen) != 0)
        return -1;
    /* before the fleet: its row names the admin port that was bound */
    if (!relay->cfg.admin_off && !(p->admin = admin_start(relay, err, errlen)))
        return -1;
    if (relay->cfg.engine_db && start_fleet(p) != 0) {
        snprintf(err, errlen, "out of memory starting the fleet membership");
        return -1;
    }
    p->runner = runner_new(relay->base, relay, relay->cfg.engine_db, p->fleet);
    if (!p->runner) {
        snprintf(err, errlen, "out of memory starting the engine");
        return -1;
    }
    if (p->admin) {
        admin_add_routes(p->admin, admin_migrations_route, p->runner);
        admin_add_status(p->admin, "fleet", fleet_status, p);
        admin_add_status(p->admin, "engine", engine_status, p);
        admin_add_metrics(p->admin, migration_metrics_write_relay, relay);
        admin_add_metrics(p->admin, migration_metrics_write_runner, p->runner);
        if (p->fleet)
            admin_add_metrics(p->admin, migration_metrics_write_fleet, p->fleet);
    }
    p->metrics_timer = event_new(relay->base, -1, EV_PERSIST, metrics_tick_cb, relay);
    struct timeval second = {1, 0};
    if (!p->metrics_timer || event_add(p->metrics_timer, &second) != 0) {
        snprintf(err, errlen, "could not set the metrics timer");
        return -1;
    }
    p->sigterm = add_signal(p, SIGTERM);
    p->sigint = add_signal(p, SIGINT);
    p->sighup = add_signal(p, SIGHUP);
    if (!p->sigterm || !p->sigint || !p->sighup) {
        snprintf(err, errlen, "could not install the signal handlers");
        return -1;
    }
    return 0;
}

static void proxy_free(struct proxy *p)
{
    struct relay *relay = &p->relay;
    while (relay->sessions)
        session_free(relay->sessions);
    pool_free_all(relay);
    close_listeners(relay);
    peer_free(relay);
    upstream_cancels_free(relay);
    source_limits_free(relay);
    /* the admin server first: closing a request that waits on the runner
     * (a complete behind its lock) tells the runner to forget it */
    admin_free(p->admin);
    runner_free(p->runner);
    fleet_free(p->fleet);
    pause_free(relay);
    version_gate_free(relay);
    upstream_address_free(relay);
    struct event *events[] = {p->sigterm, p->sigint, p->sighup, p->shutdown_timer, p->metrics_timer,
                              relay->accept_retry, relay->heap_trim};
    for (size_t i = 0; i < sizeof events / sizeof events[0]; i++)
        if (events[i])
            event_free(events[i]);
    if (relay->dns)
        evdns_base_free(relay->dns, 0);
    SSL_CTX_free(relay->client_tls);
    SSL_CTX_free(relay->upstream_tls);
    if (relay->users)
        users_free(relay->users);
    auth_lookup_free(relay->auth_lookup);
    OPENSSL_cleanse(relay->mock_secret, sizeof relay->mock_secret);
    if (relay->base)
        event_base_free(relay->base);
    config_free(&relay->cfg);
}

void proxy_usage(FILE *out)
{
    fprintf(out, "usage: pgtandem proxy --upstream URI [--config FILE] [OPTION VALUE]...\n"
                 "Relays Postgres clients to the upstream and runs online migrations for them. Every option\n"
                 "below can also be given in the --config file under its config key; flags override the file.\n"
                 "SIGHUP reloads the TLS certificate, the log level and the users file; SIGTERM stops gracefully.\n"
                 "options:\n");
    config_print_help(out);
}

/* --help or -h where a flag is expected (not as another flag's value). */
static int wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i += 2)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return 1;
    return 0;
}

int proxy_main(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        proxy_usage(stdout);
        return 0;
    }
    struct proxy p;
    memset(&p, 0, sizeof p);
    config_init(&p.relay.cfg);
    char err[8192]; /* a --pgbouncer-ini refused names every setting */
    if (config_from_args(&p.relay.cfg, argc, argv, err, sizeof err) != 0) {
        fprintf(stderr, "pgtandem proxy: %s\n", err);
        config_free(&p.relay.cfg);
        return 2;
    }
    log_set_level(p.relay.cfg.log_level);
    log_set_format(p.relay.cfg.log_format);
    log_pgbouncer_report(p.relay.cfg.pgbouncer_report);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    if (proxy_init(&p, err, sizeof err) != 0) {
        log_error("%s", err);
        proxy_free(&p);
        return 1;
    }
    char admin[160] = "off";
    if (p.admin)
        snprintf(admin, sizeof admin, "%s:%d", p.relay.cfg.admin_host, p.relay.cfg.admin_port);
    log_info("pgtandem proxy listening on %s:%d%s%s, upstream %s:%d (tls %s), admin %s, peers %s",
             p.relay.cfg.listen_host, p.relay.cfg.listen_port, p.relay.unix_socket_path ? " and " : "",
             p.relay.unix_socket_path ? p.relay.unix_socket_path : "", p.relay.cfg.upstream_host, p.relay.cfg.upstream_port,
             p.relay.upstream_tls ? "on" : "off", admin, p.relay.fleet.address[0] ? p.relay.fleet.address : "off");
    event_base_dispatch(p.relay.base);
    log_info("pgtandem proxy stopped");
    proxy_free(&p);
    return 0;
}

/* The one server struct: the event loop, listeners, TLS contexts, every
 * session, pause state and metrics. Everything mutable in the proxy hangs
 * off this struct. */
#ifndef PGTANDEM_SERVER_H
#define PGTANDEM_SERVER_H

#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/ssl.h>
#include <stdint.h>

#include "config.h"
#include "metrics.h"
#include "pause.h"
#include "upstream.h"

struct session;
struct admin;
struct migration_runner;
struct users;
struct evdns_base;

struct server {
    struct config cfg;
    struct event_base *base;
    struct evdns_base *dns;
    struct evconnlistener *tcp_listener;
    struct evconnlistener *unix_listener;
    char *unix_socket_path;
    SSL_CTX *client_tls;   /* terminates client TLS; NULL when disabled */
    SSL_CTX *upstream_tls; /* NULL when the upstream is plain */
    struct upstream_address upstream_addr;
    struct admin *admin;
    struct migration_runner *runner; /* the engine inside the proxy */
    struct users *users;             /* auth "scram": who may log in */
    unsigned char mock_secret[32];   /* salts mock exchanges for unknown users */
    unsigned char cb_data[64];       /* tls-server-end-point of our certificate */
    size_t cb_len;
    struct auth_failures {           /* failed logins per client address, per minute */
        char addr[64];
        uint64_t window_start_us;
        uint32_t count;
    } auth_failures[64];
    struct event *sigterm, *sigint, *sighup;
    struct event *shutdown_timer;
    struct event *metrics_timer;
    int shutting_down;

    struct session *sessions; /* doubly linked, newest first */
    uint32_t session_count;
    uint64_t next_session_id;

    struct pause_state pause;
    struct metrics metrics;
};

/* Time in microseconds from the loop's cached clock. */
uint64_t server_now_us(struct server *srv);

/* Called by sessions as they go away, so shutdown can finish. */
void server_session_closed(struct server *srv);

#endif

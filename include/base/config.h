/* Proxy configuration: defaults, the JSON config file and command-line flags
 * (flags override the file). */
#ifndef PGTANDEM_CONFIG_H
#define PGTANDEM_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"

enum client_tls_mode { CLIENT_TLS_DISABLE, CLIENT_TLS_ALLOW, CLIENT_TLS_REQUIRE };

/* An address range: 10.0.0.0/8, 2001:db8::/32, 127.0.0.1 (a /32). */
struct config_cidr {
    int family;              /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    int bits;
};
enum upstream_tls_mode { UPSTREAM_TLS_DISABLE, UPSTREAM_TLS_REQUIRE, UPSTREAM_TLS_VERIFY_CA, UPSTREAM_TLS_VERIFY_FULL };

struct config {
    char *config_path;
    char *listen_host;
    int listen_port;
    char *unix_socket_dir;     /* NULL: no Unix socket */
    char *upstream_uri;
    char *upstream_host;       /* from the URI */
    int upstream_port;
    enum upstream_tls_mode upstream_tls;
    char *upstream_ca;         /* sslrootcert; NULL: system store */
    char *admin_host;
    int admin_port;            /* 0: any free port (the bound one once listening) */
    int admin_off;             /* --admin off: no admin API */
    char *admin_token;         /* NULL: no token required */
    char *tls_cert;
    char *tls_key;
    enum client_tls_mode client_tls;
    int client_tls_given;      /* explicitly configured (else derived from cert) */
    uint32_t max_message_bytes;
    size_t buffer_bytes;       /* per direction, before backpressure */
    enum log_level log_level;
    enum log_format log_format;     /* text | json */
    int shutdown_timeout_ms;
    int client_login_timeout_ms; /* startup, TLS handshake and login must finish within it (0: no limit) */
    int cancel_wait_timeout_ms;  /* a CancelRequest's connection stays open until it is answered, at most this */
    int source_failures_per_s;   /* unmatched CancelRequests and bad startup packets per source address */
    int admin_request_timeout_s; /* an admin request must arrive whole within it */
    char *engine_db;           /* where the proxy's own engine connects (with credentials) */
    int fleet_lease_ms;        /* a proxy silent this long is out of the fleet */
    char *fleet_id;            /* this proxy's id in pgtandem.proxies (NULL: host-pid-random) */
    int auth_scram;            /* auth "scram": the proxy authenticates clients itself */
    char *users_file;          /* for auth "scram" */
    char *neon_endpoint;       /* added as options=endpoint=<id> when the client sent none */
    char *upstream_hostaddr;   /* connect here, keep upstream_host for SNI/verification */
    char *peer_host;           /* peer listener (forwarded cancels); NULL: off */
    int peer_port;             /* 0: an ephemeral port */
    int peer_given;            /* --peer-listen or peer_listen configured (else: listen host, port 0) */
    int pool_transaction;      /* pool_mode "transaction" (else "session") */
    int pool_size;             /* server connections per pool */
    int max_client_conn;       /* client connections, in either mode */
    int max_db_connections;    /* server connections per database over all its pools (0: no limit) */
    int query_wait_timeout_ms; /* a client waits this long for a server connection (0: forever) */
    int server_idle_timeout_ms;/* an idle server connection is closed after it (0: never) */
    int server_lifetime_ms;    /* a server connection is closed once this old, between transactions (0: never) */
    int server_reset_always;   /* RESET ALL when a server passes to another client (SETs the pool cannot see) */
    int max_prepared_statements; /* clients' named statements kept prepared per server connection */
    char *auth_query;          /* --auth-query: SQL ($1: user) returning (name, verifier); NULL: none */
    char *auth_query_db;       /* where it runs (NULL: engine_db) */
    int auth_query_cache_ms;   /* an answer is reused this long */
    int auth_query_timeout_ms; /* a lookup not answered within it refuses its login (08006) */
    int auth_query_connections;/* lookups in flight at once, each on its own connection */
    char *pgbouncer_ini;       /* --pgbouncer-ini: read before --config and the flags */
    char *pgbouncer_report;    /* what it mapped and ignored, one line each, for the log; NULL: none */
    int server_login_retry_ms; /* after a failed server login: refuse clients without a server, no login (pool.h) */
    struct config_cidr *proxy_trusted; /* PROXY protocol headers are taken from these sources only */
    int nproxy_trusted;
};

/* A setting that is not a number (those are in settings_table.c): its
 * flag, config file key, what it takes and its default, one line of help,
 * and how it is set. Flags, the config file, their errors and
 * `pgtandem proxy --help` all read this one table. */
struct config_option {
    const char *flag;            /* "--listen" */
    const char *key;             /* config file key; NULL: a flag only */
    const char *value;           /* what it takes: "HOST:PORT", "URI" */
    const char *const *choices;  /* the words it takes (NULL-ended); NULL: any text */
    const char *def;             /* the default, as the help shows it */
    const char *help;
    size_t field;                /* when set is NULL: offsetof a char * in struct config, or with
                                    choices an int that takes the word's index */
    int (*set)(struct config *cfg, const char *v, char *err, size_t errlen);
};

/* The table, ended by an entry whose flag is NULL. */
const struct config_option *config_options(void);
/* "listen, unix_socket, ...": every key the config file takes. */
void config_known_keys(char *out, size_t cap);
/* Every flag of `pgtandem proxy` with its values, default and config key. */
void config_print_help(FILE *out);

void config_init(struct config *cfg);
void config_free(struct config *cfg);

/* Loads defaults, then the file named by --config (if any), then the flags.
 * argv[0] is the subcommand name. Returns 0, or -1 with a message in err. */
int config_from_args(struct config *cfg, int argc, char **argv, char *err, size_t errlen);

/* Re-reads the reloadable settings (log level, TLS files) from the config
 * file into cfg; flags given at start keep precedence. */
int config_reload(struct config *cfg, char *err, size_t errlen);

/* localhost, 127.0.0.0/8, ::1 (also v4-mapped): an address only this
 * host can reach. The admin API's Host check and its refusal to listen
 * beyond this host without a token both use it. */
int config_host_is_loopback(const char *host);

/* "10.0.0.0/8,127.0.0.1/32,::1" into a list (caller frees); "" and "none"
 * give none. -1 with err set for a word that is not an address or range. */
int config_parse_cidrs(const char *text, struct config_cidr **out, int *n, char *err, size_t errlen);
/* Whether a connection's address (AF_INET, AF_INET6; an IPv4 address
 * mapped into IPv6 counts as the IPv4 one) is in one of the ranges. */
struct sockaddr;
int config_cidr_match(const struct config_cidr *list, int n, const struct sockaddr *addr);

#endif

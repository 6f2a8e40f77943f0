/* Reads a pgbouncer.ini and translates it setting by setting (see
 * pgbouncer_ini.h). One table says what each PgBouncer setting becomes;
 * [databases] entries are folded into the one upstream the proxy has. */
#include "pgbouncer_ini.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum rule {
    R_KEY,      /* the value as it is, under `target` */
    R_SECONDS,  /* PgBouncer takes seconds (fractions allowed); `target` takes whole seconds */
    R_PATH,     /* a file: resolved against the ini file's folder */
    R_IGNORE,   /* no meaning here: `why` */
    R_ZERO,     /* ignored when 0 (or empty), refused otherwise: `why` */
    R_REFUSE,   /* refused whatever its value: `why` */
    R_CUSTOM    /* handled by name below */
};

struct rule_entry {
    const char *name;
    enum rule rule;
    const char *target;
    const char *why;
};

#define LOGS "logs go to stderr, as a container's do; --log-level and --log-format say how much and how"
#define TUNING "the proxy's sockets and buffers are tuned by buffer_bytes and the kernel's defaults"

static const struct rule_entry RULES[] = {
    {"listen_addr", R_CUSTOM, "listen", NULL},
    {"listen_port", R_CUSTOM, "listen", NULL},
    {"unix_socket_dir", R_CUSTOM, "unix_socket", NULL},
    {"auth_type", R_CUSTOM, "auth", NULL},
    {"auth_file", R_PATH, "users_file", NULL},
    {"pool_mode", R_CUSTOM, "pool_mode", NULL},
    {"default_pool_size", R_KEY, "pool_size", NULL},
    {"max_client_conn", R_KEY, "max_client_conn", NULL},
    {"max_db_connections", R_KEY, "max_db_connections", NULL},
    {"max_prepared_statements", R_CUSTOM, "max_prepared_statements", NULL},
    {"query_wait_timeout", R_SECONDS, "query_wait_timeout_s", NULL},
    {"server_idle_timeout", R_SECONDS, "server_idle_timeout_s", NULL},
    {"server_lifetime", R_SECONDS, "server_lifetime_s", NULL},
    {"client_login_timeout", R_SECONDS, "client_login_timeout_s", NULL},
    {"cancel_wait_timeout", R_SECONDS, "cancel_wait_timeout_s", NULL},
    {"max_packet_size", R_KEY, "max_message_bytes", NULL},
    {"client_tls_sslmode", R_CUSTOM, "client_tls", NULL},
    {"client_tls_cert_file", R_PATH, "tls_cert", NULL},
    {"client_tls_key_file", R_PATH, "tls_key", NULL},
    {"server_tls_sslmode", R_CUSTOM, "upstream", NULL},
    {"server_tls_ca_file", R_CUSTOM, "upstream", NULL},
    {"client_tls_ca_file", R_IGNORE, NULL, "client certificates are not checked (client_tls_sslmode verify-* is "
                                           "refused), so there is no CA to check them against"},
    {"client_tls_protocols", R_IGNORE, NULL, "TLS 1.2 and 1.3 are offered, as OpenSSL's defaults allow"},
    {"client_tls_ciphers", R_IGNORE, NULL, "OpenSSL's default ciphers are offered"},
    {"server_tls_protocols", R_IGNORE, NULL, "libpq's defaults are used upstream"},
    {"server_tls_ciphers", R_IGNORE, NULL, "libpq's defaults are used upstream"},
    {"server_tls_cert_file", R_REFUSE, NULL, "the proxy does not present a client certificate upstream"},
    {"server_tls_key_file", R_REFUSE, NULL, "the proxy does not present a client certificate upstream"},
    {"auth_query", R_KEY, "auth_query", NULL},
    {"auth_user", R_REFUSE, NULL, "the auth query runs on --auth-query-db (a URI with its own role and "
                                  "password), not as a user of auth_file: give that flag and remove auth_user"},
    {"auth_dbname", R_REFUSE, NULL, "the auth query runs on --auth-query-db's database"},
    {"auth_hba_file", R_REFUSE, NULL, "no hba rules: every user in auth_file may connect to any database, "
                                      "and Postgres's own pg_hba.conf still applies upstream"},
    {"logfile", R_IGNORE, NULL, LOGS},
    {"syslog", R_IGNORE, NULL, LOGS},
    {"syslog_ident", R_IGNORE, NULL, LOGS},
    {"syslog_facility", R_IGNORE, NULL, LOGS},
    {"log_connections", R_IGNORE, NULL, LOGS},
    {"log_disconnections", R_IGNORE, NULL, LOGS},
    {"log_pooler_errors", R_IGNORE, NULL, LOGS},
    {"log_stats", R_IGNORE, NULL, "counters are served at GET /metrics"},
    {"stats_period", R_IGNORE, NULL, "counters are served at GET /metrics"},
    {"verbose", R_IGNORE, NULL, LOGS},
    {"pidfile", R_IGNORE, NULL, "the proxy runs in the foreground under its supervisor"},
    {"user", R_IGNORE, NULL, "start the proxy as that user"},
    {"admin_users", R_IGNORE, NULL, "the admin API is HTTP with a token (--admin-token), not a console database"},
    {"stats_users", R_IGNORE, NULL, "the admin API is HTTP with a token (--admin-token), not a console database"},
    {"ignore_startup_parameters", R_IGNORE, NULL, "every startup parameter a client sends is passed to Postgres"},
    {"track_extra_parameters", R_IGNORE, NULL, "the parameters the proxy restores are its own list"},
    {"server_reset_query", R_IGNORE, NULL, "a client's SETs follow it from server to server, and what cannot "
                                           "(LISTEN, a temporary table, ...) keeps its server until it ends; "
                                           "server_reset_query_always runs RESET ALL"},
    {"server_reset_query_always", R_KEY, "server_reset_query_always", NULL},
    {"server_check_query", R_IGNORE, NULL, "a broken server connection is found by its socket and replaced"},
    {"server_check_delay", R_IGNORE, NULL, "a broken server connection is found by its socket and replaced"},
    {"server_fast_close", R_IGNORE, NULL, "server connections are closed between transactions when they must be"},
    {"server_round_robin", R_IGNORE, NULL, "there is one upstream host"},
    {"server_login_retry", R_SECONDS, "server_login_retry_s", NULL},
    {"server_connect_timeout", R_IGNORE, NULL, "the proxy's own connect timeout applies"},
    {"application_name_add_host", R_IGNORE, NULL, "the client's address is in the proxy's logs and /status"},
    {"disable_pqexec", R_IGNORE, NULL, "the simple query protocol is always relayed"},
    {"dns_max_ttl", R_IGNORE, NULL, "the upstream host is resolved by libpq"},
    {"dns_nxdomain_ttl", R_IGNORE, NULL, "the upstream host is resolved by libpq"},
    {"dns_zone_check_period", R_IGNORE, NULL, "the upstream host is resolved by libpq"},
    {"resolv_conf", R_IGNORE, NULL, "the upstream host is resolved by libpq"},
    {"pkt_buf", R_IGNORE, NULL, TUNING},
    {"sbuf_loopcnt", R_IGNORE, NULL, TUNING},
    {"listen_backlog", R_IGNORE, NULL, TUNING},
    {"so_reuseport", R_IGNORE, NULL, "the proxy always sets SO_REUSEPORT"},
    {"tcp_defer_accept", R_IGNORE, NULL, TUNING},
    {"tcp_socket_buffer", R_IGNORE, NULL, TUNING},
    {"tcp_keepalive", R_IGNORE, NULL, TUNING},
    {"tcp_keepcnt", R_IGNORE, NULL, TUNING},
    {"tcp_keepidle", R_IGNORE, NULL, TUNING},
    {"tcp_keepintvl", R_IGNORE, NULL, TUNING},
    {"tcp_user_timeout", R_IGNORE, NULL, TUNING},
    {"suspend_timeout", R_IGNORE, NULL, "there is no online restart (SUSPEND); a fleet replaces proxies one by one"},
    {"peer_id", R_IGNORE, NULL, "a fleet's proxies find each other through the database (pgtandem.proxies)"},
    {"autodb_idle_timeout", R_IGNORE, NULL, "there are no automatically created databases"},
    {"min_pool_size", R_IGNORE, NULL, "server connections are opened when clients need them"},
    {"reserve_pool_size", R_ZERO, NULL, "there is no reserve pool: a client waits up to query_wait_timeout for "
                                        "a server connection"},
    {"reserve_pool_timeout", R_IGNORE, NULL, "there is no reserve pool"},
    {"max_user_connections", R_ZERO, NULL, "server connections are limited per pool (default_pool_size) and per "
                                           "database (max_db_connections), not per user"},
    {"query_timeout", R_ZERO, NULL, "the proxy does not cancel long queries; set statement_timeout on the role "
                                    "(ALTER ROLE ... SET statement_timeout)"},
    {"idle_transaction_timeout", R_ZERO, NULL, "the proxy does not end idle transactions; set "
                                               "idle_in_transaction_session_timeout on the role"},
    {"client_idle_timeout", R_ZERO, NULL, "the proxy does not close idle clients"},
    {"transaction_timeout", R_ZERO, NULL, "the proxy does not end long transactions; set transaction_timeout "
                                          "on the role (Postgres 17)"},
    {NULL, R_IGNORE, NULL, NULL},
};

static const struct rule_entry *rule_of(const char *name)
{
    for (const struct rule_entry *r = RULES; r->name; r++)
        if (strcmp(r->name, name) == 0)
            return r;
    return NULL;
}

/* ---- the list ---- */

/* Texts longer than their slot are cut: the slots are sized for any
 * setting a real file has, and a cut value is refused by its key's check. */
static void copy_text(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static struct pgb_item *add(struct pgb_translation *t, enum pgb_outcome o, int line, const char *setting)
{
    if (t->count == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 32;
        struct pgb_item *grown = realloc(t->items, cap * sizeof *grown);
        if (!grown)
            return NULL;
        t->items = grown;
        t->cap = cap;
    }
    struct pgb_item *it = &t->items[t->count++];
    memset(it, 0, sizeof *it);
    it->outcome = o;
    it->line = line;
    copy_text(it->setting, sizeof it->setting, setting);
    return it;
}

static int say(struct pgb_translation *t, enum pgb_outcome o, int line, const char *setting, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int say(struct pgb_translation *t, enum pgb_outcome o, int line, const char *setting, const char *fmt, ...)
{
    struct pgb_item *it = add(t, o, line, setting);
    if (!it)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(it->why, sizeof it->why, fmt, ap);
    va_end(ap);
    return 0;
}

static int map(struct pgb_translation *t, int line, const char *setting, const char *key, const char *value,
               const char *note)
{
    struct pgb_item *it = add(t, PGB_MAPPED, line, setting);
    if (!it)
        return -1;
    copy_text(it->key, sizeof it->key, key);
    copy_text(it->value, sizeof it->value, value);
    if (note)
        copy_text(it->why, sizeof it->why, note);
    return 0;
}

/* ---- what the [pgbouncer] section and [databases] leave for the end ---- */

struct gathered {
    char listen_addr[256];
    int listen_addr_line;
    char listen_port[16];
    int listen_port_line;
    char server_sslmode[32];
    char server_ca[512];
    char upstream_host[256];
    char upstream_port[16];
    int upstream_line;          /* 0: no database entry yet */
    int databases;
    int wildcard;               /* a "*" entry: PgBouncer serves any database */
    int auth_type_line;         /* 0: not given (PgBouncer's default is md5) */
    char db_pool_size[16], db_pool_mode[16];
    int db_pool_size_line, db_pool_mode_line;
    const char *folder;         /* of the ini file, with its slash; "" for none */
};

static void resolve_path(const struct gathered *g, const char *v, char *out, size_t cap)
{
    if (v[0] == '/' || !g->folder[0])
        copy_text(out, cap, v);
    else
        snprintf(out, cap, "%s%s", g->folder, v);
}

static int is_zero(const char *v)
{
    if (!*v)
        return 1;
    char *end;
    double d = strtod(v, &end);
    return *end == '\0' && d == 0;
}

static int custom(struct pgb_translation *t, struct gathered *g, int line, const char *setting, const char *k,
                  const char *v)
{
    if (!strcmp(k, "listen_addr")) {
        copy_text(g->listen_addr, sizeof g->listen_addr, v);
        g->listen_addr_line = line;
        return 0;
    }
    if (!strcmp(k, "listen_port")) {
        copy_text(g->listen_port, sizeof g->listen_port, v);
        g->listen_port_line = line;
        return 0;
    }
    if (!strcmp(k, "unix_socket_dir"))
        return *v ? map(t, line, setting, "unix_socket", v, NULL)
                  : say(t, PGB_IGNORED, line, setting, "empty: no Unix socket, as without it here");
    if (!strcmp(k, "auth_type")) {
        g->auth_type_line = line;
        if (!strcmp(v, "scram-sha-256"))
            return map(t, line, setting, "auth", "scram", NULL);
        if (!strcmp(v, "md5"))
            return map(t, line, setting, "auth", "scram",
                       "clients authenticate with SCRAM-SHA-256 against auth_file's verifiers or passwords, as "
                       "PgBouncer does for a SCRAM secret under md5; an md5 secret in auth_file is refused");
        return say(t, PGB_REFUSED, line, setting, "auth_type %s: the proxy authenticates clients with "
                   "SCRAM-SHA-256 (scram-sha-256, or md5 with SCRAM secrets), or passes authentication through "
                   "to Postgres when no auth_type is given (and pool_mode is session)", v);
    }
    if (!strcmp(k, "pool_mode")) {
        if (!strcmp(v, "session") || !strcmp(v, "transaction"))
            return map(t, line, setting, "pool_mode", v, NULL);
        return say(t, PGB_REFUSED, line, setting, "pool_mode %s: session and transaction pooling only (a "
                   "statement pool breaks transactions, which a migration's dual writes rely on)", v);
    }
    if (!strcmp(k, "max_prepared_statements"))
        return is_zero(v) ? say(t, PGB_IGNORED, line, setting, "0 turns PgBouncer's prepared statements off; "
                                "the proxy always keeps them (default 200 per server connection)")
                          : map(t, line, setting, "max_prepared_statements", v, NULL);
    if (!strcmp(k, "client_tls_sslmode")) {
        const char *m = !strcmp(v, "disable") ? "disable" : (!strcmp(v, "allow") || !strcmp(v, "prefer")) ? "allow"
                        : !strcmp(v, "require") ? "require" : NULL;
        if (m)
            return map(t, line, setting, "client_tls", m, NULL);
        return say(t, PGB_REFUSED, line, setting, "client_tls_sslmode %s: client certificates are not checked "
                   "(disable, allow, prefer or require)", v);
    }
    if (!strcmp(k, "server_tls_sslmode")) {
        copy_text(g->server_sslmode, sizeof g->server_sslmode, v);
        return 0;
    }
    if (!strcmp(k, "server_tls_ca_file")) {
        resolve_path(g, v, g->server_ca, sizeof g->server_ca);
        return 0;
    }
    return say(t, PGB_REFUSED, line, setting, "not handled");
}

static int pgbouncer_setting(struct pgb_translation *t, struct gathered *g, int line, const char *k, const char *v)
{
    char setting[64];
    snprintf(setting, sizeof setting, "[pgbouncer] %s", k);
    const struct rule_entry *r = rule_of(k);
    if (!r)
        return say(t, PGB_REFUSED, line, setting, "not a setting the proxy knows; remove it or tell us what it "
                   "should do");
    char buf[512];
    switch (r->rule) {
    case R_KEY:
        return map(t, line, setting, r->target, v, NULL);
    case R_SECONDS: {
        char *end;
        double d = strtod(v, &end);
        if (end == v || *end) /* config.c refuses it with the key's own range */
            return map(t, line, setting, r->target, v, NULL);
        snprintf(buf, sizeof buf, "%ld", (long)(d + 0.999));
        return map(t, line, setting, r->target, buf, d != (long)d ? "rounded up to whole seconds" : NULL);
    }
    case R_PATH:
        resolve_path(g, v, buf, sizeof buf);
        return map(t, line, setting, r->target, buf, NULL);
    case R_IGNORE:
        return say(t, PGB_IGNORED, line, setting, "%s", r->why);
    case R_ZERO:
        return say(t, is_zero(v) ? PGB_IGNORED : PGB_REFUSED, line, setting, "%s", r->why);
    case R_REFUSE:
        return say(t, PGB_REFUSED, line, setting, "%s", r->why);
    case R_CUSTOM:
        return custom(t, g, line, setting, k, v);
    }
    return 0;
}

/* ---- [databases]: "name = host=... port=... dbname=..." ---- */

/* The next key=value of a libpq-style string (values may be 'quoted',
 * with \' and \\ inside); 0 at the end, -1 when malformed. */
static int next_pair(const char **p, char *key, size_t kcap, char *val, size_t vcap)
{
    const char *s = *p;
    while (isspace((unsigned char)*s))
        s++;
    if (!*s)
        return 0;
    size_t n = 0;
    while (*s && *s != '=' && !isspace((unsigned char)*s))
        if (n + 1 < kcap)
            key[n++] = *s++;
        else
            s++;
    key[n] = '\0';
    while (isspace((unsigned char)*s))
        s++;
    if (*s != '=' || n == 0)
        return -1;
    s++;
    while (isspace((unsigned char)*s))
        s++;
    n = 0;
    if (*s == '\'') {
        for (s++; *s && *s != '\''; s++) {
            if (*s == '\\' && s[1])
                s++;
            if (n + 1 < vcap)
                val[n++] = *s;
        }
        if (*s != '\'')
            return -1;
        s++;
    } else {
        while (*s && !isspace((unsigned char)*s))
            if (n + 1 < vcap)
                val[n++] = *s++;
            else
                s++;
    }
    val[n] = '\0';
    *p = s;
    return 1;
}

static int database_entry(struct pgb_translation *t, struct gathered *g, int line, const char *name,
                          const char *conn)
{
    char setting[64], key[64], val[256];
    snprintf(setting, sizeof setting, "[databases] %s", name);
    char host[256] = "", port[16] = "5432";
    const char *p = conn;
    int r;
    while ((r = next_pair(&p, key, sizeof key, val, sizeof val)) > 0) {
        if (!strcmp(key, "host")) {
            copy_text(host, sizeof host, val);
        } else if (!strcmp(key, "port")) {
            copy_text(port, sizeof port, val);
        } else if (!strcmp(key, "dbname")) {
            if (strcmp(name, "*") != 0 && strcmp(val, name) != 0)
                return say(t, PGB_REFUSED, line, setting, "dbname=%s renames database %s: the proxy passes the "
                           "database a client asks for to Postgres as it is; let clients ask for %s", val, name, val);
        } else if (!strcmp(key, "pool_size") || !strcmp(key, "pool_mode")) {
            int size = !strcmp(key, "pool_size");
            copy_text(size ? g->db_pool_size : g->db_pool_mode, 16, val);
            *(size ? &g->db_pool_size_line : &g->db_pool_mode_line) = line;
        } else if (!strcmp(key, "max_db_connections")) {
            if (map(t, line, setting, "max_db_connections", val, NULL) != 0)
                return -1;
        } else if (!strcmp(key, "user") || !strcmp(key, "password") || !strcmp(key, "auth_user")) {
            return say(t, PGB_REFUSED, line, setting, "%s=: the proxy logs in upstream as the client's own user; "
                       "a fixed one is not supported", key);
        } else {
            return say(t, PGB_REFUSED, line, setting, "%s=%s: set it on the role or the database in Postgres "
                       "(ALTER ROLE/DATABASE ... SET) instead", key, val);
        }
    }
    if (r < 0)
        return say(t, PGB_REFUSED, line, setting, "cannot read \"%s\" as key=value pairs", conn);
    if (!host[0])
        return say(t, PGB_REFUSED, line, setting, "no host=: give the Postgres host (a Unix socket's folder "
                   "starts with /)");
    g->databases++;
    g->wildcard |= strcmp(name, "*") == 0;
    if (!g->upstream_line) {
        copy_text(g->upstream_host, sizeof g->upstream_host, host);
        copy_text(g->upstream_port, sizeof g->upstream_port, port);
        g->upstream_line = line;
        return 0;
    }
    if (strcmp(host, g->upstream_host) || strcmp(port, g->upstream_port))
        return say(t, PGB_REFUSED, line, setting, "host=%s port=%s: a proxy has one upstream (%s:%s, line %d); "
                   "run one proxy per Postgres server", host, port, g->upstream_host, g->upstream_port,
                   g->upstream_line);
    return say(t, PGB_IGNORED, line, setting, "the same upstream as line %d", g->upstream_line);
}

/* ---- what was gathered ---- */

static int finish(struct pgb_translation *t, struct gathered *g)
{
    char buf[1024];
    if (g->listen_addr_line || g->listen_port_line) {
        const char *a = g->listen_addr;
        int line = g->listen_addr_line ? g->listen_addr_line : g->listen_port_line;
        if (g->listen_addr_line && !*a)
            return say(t, PGB_REFUSED, line, "[pgbouncer] listen_addr", "empty (Unix socket only): the proxy "
                       "always listens on TCP as well");
        if (strchr(a, ','))
            return say(t, PGB_REFUSED, line, "[pgbouncer] listen_addr", "%s: one address (0.0.0.0 for all "
                       "IPv4 addresses, :: for all addresses)", a);
        if (!strcmp(a, "*"))
            a = "0.0.0.0";
        snprintf(buf, sizeof buf, "%s%s%s:%s", strchr(a, ':') ? "[" : "", *a ? a : "127.0.0.1",
                 strchr(a, ':') ? "]" : "", g->listen_port[0] ? g->listen_port : "6432");
        if (map(t, line, "[pgbouncer] listen_addr, listen_port", "listen", buf, NULL) != 0)
            return -1;
    }
    if (g->databases > 1 && (g->db_pool_size_line || g->db_pool_mode_line))
        return say(t, PGB_REFUSED, g->db_pool_size_line ? g->db_pool_size_line : g->db_pool_mode_line,
                   "[databases] pool_size/pool_mode", "set for one of several databases: the proxy's pool size "
                   "and mode are the same for every database");
    if (g->db_pool_size_line && map(t, g->db_pool_size_line, "[databases] pool_size", "pool_size",
                                    g->db_pool_size, NULL) != 0)
        return -1;
    if (g->db_pool_mode_line) {
        if (strcmp(g->db_pool_mode, "session") && strcmp(g->db_pool_mode, "transaction"))
            return say(t, PGB_REFUSED, g->db_pool_mode_line, "[databases] pool_mode", "%s: session and "
                       "transaction pooling only", g->db_pool_mode);
        if (map(t, g->db_pool_mode_line, "[databases] pool_mode", "pool_mode", g->db_pool_mode, NULL) != 0)
            return -1;
    }
    if (!g->auth_type_line && map(t, 0, "[pgbouncer] auth_type (not given)", "auth", "scram",
                                  "PgBouncer's default, md5, authenticates clients from auth_file") != 0)
        return -1;
    if (!g->upstream_line)
        return say(t, PGB_REFUSED, 0, "[databases]", "no database entry with a host: the proxy needs its "
                   "upstream");
    /* PgBouncer's server_tls_sslmode defaults to prefer, which falls back to
     * plain text; the proxy never does, so prefer and allow become require */
    const char *mode = g->server_sslmode[0] ? g->server_sslmode : "prefer";
    int unix_socket = g->upstream_host[0] == '/';
    int n = snprintf(buf, sizeof buf, "postgresql:///?host=%s&port=%s", g->upstream_host, g->upstream_port);
    if (!unix_socket && n > 0 && (size_t)n < sizeof buf)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "&sslmode=%s",
                      !strcmp(mode, "prefer") || !strcmp(mode, "allow") ? "require" : mode);
    if (!unix_socket && g->server_ca[0] && n > 0 && (size_t)n < sizeof buf)
        snprintf(buf + n, sizeof buf - (size_t)n, "&sslrootcert=%s", g->server_ca);
    char note[256] = "";
    if (!unix_socket && (!strcmp(mode, "prefer") || !strcmp(mode, "allow")))
        copy_text(note, sizeof note, "server_tls_sslmode prefer/allow becomes require: the proxy never falls back "
                                     "to plain text");
    if (!g->wildcard) {
        size_t used = strlen(note);
        snprintf(note + used, sizeof note - used, "%sPgBouncer serves only the databases [databases] lists; the "
                 "proxy passes any database a client asks for to Postgres", used ? "; " : "");
    }
    char from[128];
    snprintf(from, sizeof from, "[databases] host, port%s%s%s", g->server_sslmode[0] || g->server_ca[0] ?
             "; [pgbouncer] " : "", g->server_sslmode[0] ? "server_tls_sslmode" : "",
             g->server_ca[0] ? (g->server_sslmode[0] ? ", server_tls_ca_file" : "server_tls_ca_file") : "");
    return map(t, g->upstream_line, from, "upstream", buf, note[0] ? note : NULL);
}

/* ---- the file ---- */

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

int pgbouncer_ini_translate(const char *path, const char *text, struct pgb_translation *out, char *err,
                            size_t errlen)
{
    memset(out, 0, sizeof *out);
    struct gathered g = {0};
    char folder[512] = "";
    const char *slash = strrchr(path, '/');
    if (slash && (size_t)(slash - path + 1) < sizeof folder)
        snprintf(folder, sizeof folder, "%.*s", (int)(slash - path + 1), path);
    g.folder = folder;
    enum { NONE, PGBOUNCER, DATABASES, USERS, PEERS, OTHER } section = NONE;
    int line = 0, rc = 0;
    const char *p = text;
    while (*p && rc == 0) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char raw[2048];
        line++;
        if (len >= sizeof raw) {
            snprintf(err, errlen, "%s:%d: line longer than %zu bytes", path, line, sizeof raw - 1);
            pgbouncer_ini_free(out);
            return -1;
        }
        memcpy(raw, p, len);
        raw[len] = '\0';
        p = nl ? nl + 1 : p + len;
        char *s = trim(raw);
        if (!*s || *s == ';' || *s == '#')
            continue;
        if (*s == '[') {
            char *end = strchr(s, ']');
            if (!end) {
                snprintf(err, errlen, "%s:%d: a section header needs its ]", path, line);
                pgbouncer_ini_free(out);
                return -1;
            }
            *end = '\0';
            section = !strcmp(s + 1, "pgbouncer") ? PGBOUNCER : !strcmp(s + 1, "databases") ? DATABASES
                      : !strcmp(s + 1, "users") ? USERS : !strcmp(s + 1, "peers") ? PEERS : OTHER;
            if (section == OTHER)
                rc = say(out, PGB_REFUSED, line, s + 1, "an unknown section");
            continue;
        }
        if (!strncmp(s, "%include", 8)) {
            rc = say(out, PGB_REFUSED, line, "%include", "include the file's settings in this one");
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, errlen, "%s:%d: expected key = value, [section] or a ; comment", path, line);
            pgbouncer_ini_free(out);
            return -1;
        }
        *eq = '\0';
        char *k = trim(s), *v = trim(eq + 1);
        char setting[64];
        switch (section) {
        case PGBOUNCER:
            rc = pgbouncer_setting(out, &g, line, k, v);
            break;
        case DATABASES:
            rc = database_entry(out, &g, line, k, v);
            break;
        case USERS:
            snprintf(setting, sizeof setting, "[users] %s", k);
            rc = say(out, PGB_REFUSED, line, setting, "per-user pool settings: the proxy's pools are set for "
                     "every user alike");
            break;
        case PEERS:
            snprintf(setting, sizeof setting, "[peers] %s", k);
            rc = say(out, PGB_IGNORED, line, setting, "a fleet's proxies find each other through the database "
                     "(pgtandem.proxies) and forward cancel requests themselves");
            break;
        case OTHER:
            break;
        case NONE:
            snprintf(err, errlen, "%s:%d: %s = ... before any [section]", path, line, k);
            pgbouncer_ini_free(out);
            return -1;
        }
    }
    if (rc == 0)
        rc = finish(out, &g);
    if (rc != 0) {
        snprintf(err, errlen, "%s: out of memory", path);
        pgbouncer_ini_free(out);
        return -1;
    }
    return 0;
}

void pgbouncer_ini_free(struct pgb_translation *t)
{
    free(t->items);
    memset(t, 0, sizeof *t);
}

int pgbouncer_ini_refusals(const char *path, const struct pgb_translation *t, char *err, size_t errlen)
{
    size_t used = 0;
    int refused = 0;
    err[0] = '\0';
    for (size_t i = 0; i < t->count; i++) {
        const struct pgb_item *it = &t->items[i];
        if (it->outcome != PGB_REFUSED || used >= errlen)
            continue;
        int n = snprintf(err + used, errlen - used, "\n  %s:%d: %s: %s", path, it->line, it->setting, it->why);
        if (n > 0)
            used += (size_t)n;
        refused++;
    }
    return refused;
}

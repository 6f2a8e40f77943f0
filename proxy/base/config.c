/* Configuration: a JSON file (config/pgtandem.json) overridden by flags.
 * Errors name the file, line and column, so an operator can fix them without
 * guessing. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "file_read.h"
#include "pgbouncer_ini.h"
#include "settings.h"

#define DEFAULT_LISTEN_PORT 6432
#define DEFAULT_ADMIN_PORT 6433

static void set_str(char **slot, const char *value)
{
    free(*slot);
    *slot = value ? strdup(value) : NULL;
}

void config_init(struct config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    set_str(&cfg->listen_host, "127.0.0.1");
    cfg->listen_port = DEFAULT_LISTEN_PORT;
    set_str(&cfg->admin_host, "127.0.0.1");
    cfg->admin_port = DEFAULT_ADMIN_PORT;
    settings_defaults(SETTING_PROXY, cfg);
    cfg->log_level = LOG_LEVEL_INFO;
    cfg->upstream_tls = UPSTREAM_TLS_REQUIRE;
}

void config_free(struct config *cfg)
{
    char **strings[] = {&cfg->config_path, &cfg->listen_host, &cfg->unix_socket_dir, &cfg->upstream_uri,
                        &cfg->upstream_host, &cfg->upstream_ca, &cfg->admin_host, &cfg->admin_token,
                        &cfg->tls_cert, &cfg->tls_key, &cfg->engine_db, &cfg->fleet_id,
                        &cfg->users_file, &cfg->neon_endpoint, &cfg->upstream_hostaddr, &cfg->peer_host,
                        &cfg->pgbouncer_ini, &cfg->pgbouncer_report, &cfg->auth_query, &cfg->auth_query_db};
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++)
        set_str(strings[i], NULL);
    free(cfg->proxy_trusted);
    cfg->proxy_trusted = NULL;
    cfg->nproxy_trusted = 0;
}

/* One range: ADDR or ADDR/BITS. */
static int parse_cidr(const char *word, struct config_cidr *out)
{
    char addr[INET6_ADDRSTRLEN + 8];
    if (snprintf(addr, sizeof addr, "%s", word) >= (int)sizeof addr)
        return -1;
    char *slash = strchr(addr, '/');
    if (slash)
        *slash = '\0';
    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, addr, out->addr) == 1)
        out->family = AF_INET;
    else if (inet_pton(AF_INET6, addr, out->addr) == 1)
        out->family = AF_INET6;
    else
        return -1;
    int max = out->family == AF_INET ? 32 : 128;
    out->bits = max;
    if (slash) {
        char *end;
        long b = strtol(slash + 1, &end, 10);
        if (end == slash + 1 || *end || b < 0 || b > max)
            return -1;
        out->bits = (int)b;
    }
    /* bits past the prefix are not looked at: 10.1.2.3/8 is 10.0.0.0/8 */
    return 0;
}

int config_parse_cidrs(const char *text, struct config_cidr **out, int *n, char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    if (!strcmp(text, "none") || !text[0])
        return 0;
    char *copy = strdup(text), *save = NULL;
    size_t words = 1;
    for (const char *c = text; *c; c++)
        words += *c == ',';
    struct config_cidr *list = copy ? calloc(words, sizeof *list) : NULL;
    if (!list) {
        free(copy);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int count = 0;
    for (char *w = strtok_r(copy, ", ", &save); w; w = strtok_r(NULL, ", ", &save)) {
        if (parse_cidr(w, &list[count]) != 0) {
            snprintf(err, errlen, "'%s' is not an address or a range (10.0.0.0/8, 2001:db8::/32, 127.0.0.1)", w);
            free(copy);
            free(list);
            return -1;
        }
        count++;
    }
    free(copy);
    *out = list;
    *n = count;
    return 0;
}

static int prefix_matches(const unsigned char *a, const unsigned char *b, int bits)
{
    int whole = bits / 8, rest = bits % 8;
    if (memcmp(a, b, (size_t)whole) != 0)
        return 0;
    if (!rest)
        return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

int config_cidr_match(const struct config_cidr *list, int n, const struct sockaddr *addr)
{
    unsigned char a[16];
    int family = addr->sa_family;
    if (family == AF_INET) {
        memcpy(a, &((const struct sockaddr_in *)addr)->sin_addr, 4);
    } else if (family == AF_INET6) {
        static const unsigned char v4_mapped[12] = {[10] = 0xff, [11] = 0xff};
        memcpy(a, &((const struct sockaddr_in6 *)addr)->sin6_addr, 16);
        if (memcmp(a, v4_mapped, 12) == 0) {
            memmove(a, a + 12, 4);
            family = AF_INET;
        }
    } else {
        return 0;
    }
    for (int i = 0; i < n; i++)
        if (list[i].family == family && prefix_matches(list[i].addr, a, list[i].bits))
            return 1;
    return 0;
}

/* "HOST:PORT" (HOST may be "[v6]" or empty for all addresses). */
static int parse_host_port(const char *text, char **host, int *port, char *err, size_t errlen)
{
    const char *colon = strrchr(text, ':');
    if (!colon) {
        snprintf(err, errlen, "'%s' is not HOST:PORT", text);
        return -1;
    }
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p < 0 || p > 65535 || end == colon + 1) {
        snprintf(err, errlen, "'%s': port must be a number from 0 to 65535", text);
        return -1;
    }
    size_t hlen = (size_t)(colon - text);
    if (hlen >= 2 && text[0] == '[' && text[hlen - 1] == ']') {
        text++;
        hlen -= 2;
    }
    free(*host);
    *host = strndup(text, hlen);
    *port = (int)p;
    return 0;
}

/* "HOST:PORT", or "off": 1 for off, 0 for an address, -1 with err set. */
static int parse_host_port_or_off(const char *text, char **host, int *port, char *err, size_t errlen)
{
    if (strcmp(text, "off") == 0)
        return 1;
    char why[256];
    if (parse_host_port(text, host, port, why, sizeof why) == 0)
        return 0;
    snprintf(err, errlen, "%s (give HOST:PORT, port 0 for any free port, or off)", why);
    return -1;
}

static int parse_peer_listen(struct config *cfg, const char *text, char *err, size_t errlen)
{
    cfg->peer_given = 1;
    int r = parse_host_port_or_off(text, &cfg->peer_host, &cfg->peer_port, err, errlen);
    if (r == 1) {
        set_str(&cfg->peer_host, NULL);
        cfg->peer_port = 0;
    }
    return r < 0 ? -1 : 0;
}

static int parse_upstream_tls(const char *v, enum upstream_tls_mode *out)
{
    static const char *const names[] = {"disable", "require", "verify-ca", "verify-full"};
    for (int i = 0; i < 4; i++)
        if (strcmp(v, names[i]) == 0) {
            *out = (enum upstream_tls_mode)i;
            return 0;
        }
    /* libpq's weaker modes: the proxy never silently falls back to plain text */
    if (strcmp(v, "prefer") == 0 || strcmp(v, "allow") == 0) {
        *out = UPSTREAM_TLS_REQUIRE;
        return 0;
    }
    return -1;
}

/* ---- the options that are not numbers: one table for the flags, the
 * config file's keys, their errors and `pgtandem proxy --help` ---- */

static int set_listen(struct config *cfg, const char *v, char *err, size_t errlen)
{
    return parse_host_port(v, &cfg->listen_host, &cfg->listen_port, err, errlen);
}

static int set_admin(struct config *cfg, const char *v, char *err, size_t errlen)
{
    int r = parse_host_port_or_off(v, &cfg->admin_host, &cfg->admin_port, err, errlen);
    cfg->admin_off = r == 1;
    return r < 0 ? -1 : 0;
}

/* The words an option takes, in the order of the values they stand for:
 * an option with words and no setter stores the word's index in the int
 * at its field. */
static const char *const client_tls_names[] = {"disable", "allow", "require", NULL};
static const char *const log_level_names[] = {"error", "warn", "info", "debug", NULL};
static const char *const log_format_names[] = {"text", "json", NULL};
static const char *const auth_names[] = {"passthrough", "scram", NULL};
static const char *const pool_mode_names[] = {"session", "transaction", NULL};

/* Which of the NULL-ended `choices` v is; -1: none. */
static int choice_index(const char *const *choices, const char *v)
{
    for (int i = 0; choices[i]; i++)
        if (strcmp(choices[i], v) == 0)
            return i;
    return -1;
}

static int set_client_tls(struct config *cfg, const char *v, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    int i = choice_index(client_tls_names, v);
    if (i < 0)
        return -1;
    cfg->client_tls = (enum client_tls_mode)i;
    cfg->client_tls_given = 1;
    return 0;
}

static int set_log_level(struct config *cfg, const char *v, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    return log_level_parse(v, &cfg->log_level);
}

static int set_log_format(struct config *cfg, const char *v, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    return log_format_parse(v, &cfg->log_format);
}

static int set_proxy_trusted(struct config *cfg, const char *v, char *err, size_t errlen)
{
    struct config_cidr *list;
    int n;
    if (config_parse_cidrs(v, &list, &n, err, errlen) != 0)
        return -1;
    free(cfg->proxy_trusted);
    cfg->proxy_trusted = list;
    cfg->nproxy_trusted = n;
    return 0;
}

static int set_nothing(struct config *cfg, const char *v, char *err, size_t errlen)
{
    (void)cfg;
    (void)v;
    (void)err;
    (void)errlen;
    return 0;
}


#define TEXT(field) offsetof(struct config, field), NULL
#define CHOICE(field) offsetof(struct config, field), NULL

static const struct config_option OPTIONS[] = {
    {"--config", NULL, "FILE", NULL, "none", "a JSON file of these settings under their config keys; flags override it",
     0, set_nothing},
    {"--pgbouncer-ini", NULL, "FILE", NULL, "none",
     "a pgbouncer.ini (and the auth_file it names) read as PgBouncer would; prints what each setting became, "
     "refuses to start on one it cannot honour; --config and flags override it", 0, set_nothing},
    {"--listen", "listen", "HOST:PORT", NULL, "127.0.0.1:6432",
     "client address (port 0: any free port); SO_REUSEPORT lets several proxies share a port", 0, set_listen},
    {"--unix-socket", "unix_socket", "DIR", NULL, "none", "also listen on DIR/.s.PGSQL.<port>", TEXT(unix_socket_dir)},
    {"--upstream", "upstream", "URI", NULL, "none (required)",
     "postgresql://HOST:PORT/?sslmode=...&sslrootcert=... (libpq syntax; clients bring user, password, database)",
     TEXT(upstream_uri)},
    {"--tls-cert", "tls_cert", "FILE", NULL, "none", "the certificate clients see (with --tls-key)", TEXT(tls_cert)},
    {"--tls-key", "tls_key", "FILE", NULL, "none", "its private key", TEXT(tls_key)},
    {"--client-tls", "client_tls", "MODE", client_tls_names, "allow with a certificate, else disable",
     "client TLS", 0, set_client_tls},
    {"--admin", "admin", "HOST:PORT|off", NULL, "127.0.0.1:6433",
     "admin API address (port 0: any free port; off: no admin API)", 0, set_admin},
    {"--admin-token", "admin_token", "TOKEN", NULL, "$PGTANDEM_ADMIN_TOKEN, else none (loopback only)",
     "bearer token the admin API requires", TEXT(admin_token)},
    {"--engine-db", "engine_db", "URI", NULL, "$PGTANDEM_DB, else $DATABASE_URL, else none",
     "the connection (with credentials) the proxy's own migration engine uses; also makes it a fleet member",
     TEXT(engine_db)},
    {"--log-level", "log_level", "LEVEL", log_level_names, "info", "logs go to stderr with UTC timestamps", 0,
     set_log_level},
    {"--log-format", "log_format", "FORMAT", log_format_names, "text",
     "json: one object per line (time, level, component, migration, session, msg)", 0, set_log_format},
    {"--auth", "auth", "MODE", auth_names, "passthrough",
     "scram: the proxy authenticates clients itself from --users-file", CHOICE(auth_scram)},
    {"--users-file", "users_file", "FILE", NULL, "config/users.json (with --auth scram)",
     "who may log in and with what, written by `pgtandem passwd`", TEXT(users_file)},
    {"--auth-query", "auth_query", "SQL", NULL, "none",
     "with --auth scram: a user the users file does not hold is looked up with this query ($1: the user name; "
     "returns the name and its SCRAM verifier), as PgBouncer's auth_query", TEXT(auth_query)},
    {"--auth-query-db", "auth_query_db", "URI", NULL, "--engine-db",
     "the connection (with its own role) the auth query runs on", TEXT(auth_query_db)},
    {"--neon-endpoint", "neon_endpoint", "ID", NULL, "none",
     "sent upstream as options=endpoint=ID when the client sent none", TEXT(neon_endpoint)},
    {"--peer-listen", "peer_listen", "HOST:PORT|off", NULL, "the --listen host, any free port",
     "where other proxies send cancel requests that belong here (off: none)", 0, parse_peer_listen},
    {"--fleet-id", "fleet_id", "ID", NULL, "host-pid-random", "this proxy's name in the fleet (pgtandem.proxies)",
     TEXT(fleet_id)},
    {"--proxy-protocol-trusted", "proxy_protocol_trusted", "CIDR,...", NULL, "none",
     "load balancers whose PROXY protocol header (v2, or v1 text) names the real client; a connection from one "
     "must start with it, a header from anyone else is refused", 0, set_proxy_trusted},
    {"--pool-mode", "pool_mode", "MODE", pool_mode_names, "session",
     "transaction: a server connection lent per transaction (needs --auth scram)", CHOICE(pool_transaction)},
    {NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL},
};

const struct config_option *config_options(void)
{
    return OPTIONS;
}

static const struct config_option *option_by_flag(const char *flag)
{
    for (const struct config_option *o = OPTIONS; o->flag; o++)
        if (strcmp(o->flag, flag) == 0)
            return o;
    return NULL;
}

static const struct config_option *option_by_key(const char *key)
{
    for (const struct config_option *o = OPTIONS; o->flag; o++)
        if (o->key && strcmp(o->key, key) == 0)
            return o;
    return NULL;
}

/* "a, b or c" */
static void join_choices(const char *const *choices, const char *last_sep, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; choices[i] && used < cap; i++) {
        const char *sep = i == 0 ? "" : choices[i + 1] ? ", " : last_sep;
        int n = snprintf(out + used, cap - used, "%s%s", sep, choices[i]);
        if (n < 0)
            return;
        used += (size_t)n;
    }
}

/* Sets one option from its text; err says why not (without the flag or key). */
static int apply_option(struct config *cfg, const struct config_option *o, const char *v, char *err, size_t errlen)
{
    char why[384] = "";
    if (!o->set && o->choices) {
        int i = choice_index(o->choices, v);
        if (i >= 0) {
            *(int *)((char *)cfg + o->field) = i;
            return 0;
        }
    } else if (!o->set) {
        set_str((char **)((char *)cfg + o->field), v);
        return 0;
    }
    if (o->set && o->set(cfg, v, why, sizeof why) == 0)
        return 0;
    if (o->choices) {
        char names[160];
        join_choices(o->choices, " or ", names, sizeof names);
        snprintf(err, errlen, "'%s' is not %s", v, names);
    } else {
        snprintf(err, errlen, "%s", why);
    }
    return -1;
}

void config_known_keys(char *out, size_t cap)
{
    size_t used = 0;
    out[0] = '\0';
    for (const struct config_option *o = OPTIONS; o->flag && used < cap; o++) {
        if (!o->key)
            continue;
        int n = snprintf(out + used, cap - used, "%s%s", used ? ", " : "", o->key);
        if (n < 0)
            return;
        used += (size_t)n;
    }
    if (used < cap) {
        char numbers[1024];
        setting_names(SETTING_PROXY, numbers, sizeof numbers);
        snprintf(out + used, cap - used, "%s%s", used ? ", " : "", numbers);
    }
}

static void print_option(FILE *out, const char *flag, const char *value, const char *help, const char *values,
                         const char *key)
{
    char head[64];
    snprintf(head, sizeof head, "%s %s", flag, value);
    fprintf(out, "  %-34s %s\n", head, help ? help : "");
    fprintf(out, "  %-34s %s; config key: %s\n", "", values, key ? key : "(none)");
}

void config_print_help(FILE *out)
{
    char values[384];
    for (const struct config_option *o = OPTIONS; o->flag; o++) {
        char names[160] = "";
        if (o->choices)
            join_choices(o->choices, ", ", names, sizeof names);
        snprintf(values, sizeof values, "%s%s%sdefault %s", o->choices ? "one of " : "", names,
                 o->choices ? ", " : "", o->def);
        print_option(out, o->flag, o->value, o->help, values, o->key);
    }
    for (const struct setting *st = SETTINGS; st->name; st++) {
        if (st->scope != SETTING_PROXY || !st->flag)
            continue;
        setting_describe(st, values, sizeof values);
        print_option(out, st->flag, st->type == SETTING_BOOL ? "BOOL" : "N", st->help, values, st->name);
    }
}

/* Without an sslmode: a Unix socket needs none, loopback gets encryption
 * without verification, and anything across a network (Neon) gets
 * verify-full against the system CA store. */
static enum upstream_tls_mode default_upstream_tls(const char *host)
{
    if (host[0] == '/')
        return UPSTREAM_TLS_DISABLE;
    if (strcmp(host, "localhost") == 0 || strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0)
        return UPSTREAM_TLS_REQUIRE;
    return UPSTREAM_TLS_VERIFY_FULL;
}

/* Reads host, port, sslmode and sslrootcert out of a libpq URI or
 * key=value string; libpq's own parser keeps us compatible with what
 * users already write in DATABASE_URL. */
static int parse_upstream_uri(struct config *cfg, char *err, size_t errlen)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(cfg->upstream_uri, &perr);
    if (!opts) {
        snprintf(err, errlen, "upstream URI: %s", perr ? perr : "out of memory");
        PQfreemem(perr);
        return -1;
    }
    int rc = 0, sslmode_given = 0;
    set_str(&cfg->upstream_host, "localhost");
    cfg->upstream_port = 5432;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || !*o->val)
            continue;
        if (strcmp(o->keyword, "hostaddr") == 0) {
            set_str(&cfg->upstream_hostaddr, o->val);
        } else if (strcmp(o->keyword, "host") == 0) {
            if (strchr(o->val, ',')) {
                snprintf(err, errlen, "upstream URI: one host only (got '%s')", o->val);
                rc = -1;
            }
            set_str(&cfg->upstream_host, o->val);
        } else if (strcmp(o->keyword, "port") == 0) {
            cfg->upstream_port = atoi(o->val);
        } else if (strcmp(o->keyword, "sslmode") == 0) {
            sslmode_given = 1;
            if (parse_upstream_tls(o->val, &cfg->upstream_tls) != 0) {
                snprintf(err, errlen, "upstream URI: sslmode '%s' is not disable, require, verify-ca or verify-full", o->val);
                rc = -1;
            }
        } else if (strcmp(o->keyword, "sslrootcert") == 0) {
            set_str(&cfg->upstream_ca, o->val);
        }
    }
    PQconninfoFree(opts);
    if (!sslmode_given)
        cfg->upstream_tls = default_upstream_tls(cfg->upstream_host);
    if (rc == 0 && (cfg->upstream_port <= 0 || cfg->upstream_port > 65535)) {
        snprintf(err, errlen, "upstream URI: invalid port");
        rc = -1;
    }
    return rc;
}

/* Finds where "key" appears in the file text so errors can point at it. */
static void locate_key(const char *text, const char *key, int *line, int *column)
{
    char needle[128];
    snprintf(needle, sizeof needle, "\"%s\"", key);
    const char *hit = text ? strstr(text, needle) : NULL;
    *line = 1;
    *column = 1;
    for (const char *p = text; hit && p < hit; p++) {
        if (*p == '\n') {
            (*line)++;
            *column = 1;
        } else {
            (*column)++;
        }
    }
}

struct file_ctx {
    const char *path;
    const char *text;
    char *err;
    size_t errlen;
};

static int key_error(struct file_ctx *fc, const char *key, const char *what)
{
    int line, column;
    locate_key(fc->text, key, &line, &column);
    snprintf(fc->err, fc->errlen, "%s:%d:%d: \"%s\": %s", fc->path, line, column, key, what);
    return -1;
}

static int take_setting(struct config *cfg, struct file_ctx *fc, json_t *v, const struct setting *st)
{
    double value;
    char why[256];
    if (setting_from_json(st, v, &value, why, sizeof why) != 0)
        return key_error(fc, st->name, why);
    setting_store(st, cfg, value);
    return 0;
}

static int apply_file_key(struct config *cfg, struct file_ctx *fc, const char *key, json_t *v)
{
    const struct setting *st = setting_by_name(SETTING_PROXY, key);
    if (st)
        return take_setting(cfg, fc, v, st);
    const struct config_option *o = option_by_key(key);
    if (!o) {
        char known[1400];
        config_known_keys(known, sizeof known);
        char what[1500];
        snprintf(what, sizeof what, "unknown setting (known: %s)", known);
        return key_error(fc, key, what);
    }
    if (!json_is_string(v))
        return key_error(fc, key, "must be a string");
    char why[512];
    if (apply_option(cfg, o, json_string_value(v), why, sizeof why) != 0)
        return key_error(fc, key, why);
    return 0;
}

/* A config file or a pgbouncer.ini is a few KB; a megabyte is a mistake
 * (the wrong path, /dev/zero), refused by name rather than read forever. */
#define CONFIG_FILE_MAX (1u << 20)

static int load_file(struct config *cfg, const char *path, char *err, size_t errlen)
{
    char *text = file_read_all(path, "config file", CONFIG_FILE_MAX, 0, NULL, err, errlen);
    if (!text)
        return -1;
    json_error_t jerr;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        snprintf(err, errlen, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
        free(text);
        return -1;
    }
    struct file_ctx fc = {path, text, err, errlen};
    int rc = 0;
    if (!json_is_object(root)) {
        snprintf(err, errlen, "%s:1:1: the config must be a JSON object", path);
        rc = -1;
    }
    const char *key;
    json_t *value;
    json_object_foreach(root, key, value) {
        if (rc == 0)
            rc = apply_file_key(cfg, &fc, key, value);
    }
    json_decref(root);
    free(text);
    return rc;
}

/* One translated key: a number of the settings table or an option. */
static int apply_text_key(struct config *cfg, const char *key, const char *v, char *why, size_t whylen)
{
    const struct setting *st = setting_by_name(SETTING_PROXY, key);
    if (st) {
        double value;
        if (setting_from_text(st, v, &value, why, whylen) != 0)
            return -1;
        setting_store(st, cfg, value);
        return 0;
    }
    const struct config_option *o = option_by_key(key);
    if (!o) {
        snprintf(why, whylen, "no such key");
        return -1;
    }
    return apply_option(cfg, o, v, why, whylen);
}

static void report_line(struct config *cfg, const char *path, const struct pgb_item *it)
{
    char line[1024];
    if (it->outcome == PGB_MAPPED)
        snprintf(line, sizeof line, "%s:%d: %s -> %s = %s%s%s%s\n", path, it->line, it->setting, it->key,
                 it->value, it->why[0] ? " (" : "", it->why, it->why[0] ? ")" : "");
    else
        snprintf(line, sizeof line, "%s:%d: %s: ignored: %s\n", path, it->line, it->setting, it->why);
    size_t had = cfg->pgbouncer_report ? strlen(cfg->pgbouncer_report) : 0;
    char *grown = realloc(cfg->pgbouncer_report, had + strlen(line) + 1);
    if (!grown)
        return;
    memcpy(grown + had, line, strlen(line) + 1);
    cfg->pgbouncer_report = grown;
}

static int load_pgbouncer_ini(struct config *cfg, const char *path, char *err, size_t errlen)
{
    char *text = file_read_all(path, "pgbouncer.ini", CONFIG_FILE_MAX, 0, NULL, err, errlen);
    if (!text)
        return -1;
    struct pgb_translation t;
    int rc = pgbouncer_ini_translate(path, text, &t, err, errlen);
    free(text);
    if (rc != 0)
        return -1;
    char refusals[8192];
    if (pgbouncer_ini_refusals(path, &t, refusals, sizeof refusals) > 0) {
        snprintf(err, errlen, "PgBouncer settings the proxy cannot honour (change or remove them):%s", refusals);
        pgbouncer_ini_free(&t);
        return -1;
    }
    for (size_t i = 0; i < t.count && rc == 0; i++) {
        const struct pgb_item *it = &t.items[i];
        char why[512];
        if (it->outcome == PGB_MAPPED && apply_text_key(cfg, it->key, it->value, why, sizeof why) != 0) {
            snprintf(err, errlen, "%s:%d: %s: as %s = %s: %s", path, it->line, it->setting, it->key, it->value, why);
            rc = -1;
        }
        if (rc == 0)
            report_line(cfg, path, it);
    }
    pgbouncer_ini_free(&t);
    return rc;
}

/* --config is read before the rest (the flags override the file). */
static int is_known_flag(const char *arg)
{
    return option_by_flag(arg) != NULL || setting_by_flag(arg) != NULL;
}

static int apply_flag(struct config *cfg, const char *flag, const char *v, char *err, size_t errlen)
{
    const struct config_option *o = option_by_flag(flag);
    char why[512];
    if (o) {
        if (apply_option(cfg, o, v, why, sizeof why) == 0)
            return 0;
        snprintf(err, errlen, "%s: %s", flag, why);
        return -1;
    }
    const struct setting *st = setting_by_flag(flag);
    double value;
    if (!st || setting_from_text(st, v, &value, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s: %s", flag, st ? why : "unknown option");
        return -1;
    }
    setting_store(st, cfg, value);
    return 0;
}

static int apply_flags(struct config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    for (int i = 1; i < argc; i += 2) {
        if (!is_known_flag(argv[i])) {
            snprintf(err, errlen, "unknown option '%s' (`pgtandem proxy --help` lists them)", argv[i]);
            return -1;
        }
        if (i + 1 >= argc) {
            snprintf(err, errlen, "option '%s' needs a value", argv[i]);
            return -1;
        }
        if (strcmp(argv[i], "--config") != 0 && strcmp(argv[i], "--pgbouncer-ini") != 0 &&
            apply_flag(cfg, argv[i], argv[i + 1], err, errlen) != 0)
            return -1;
    }
    return 0;
}

int config_host_is_loopback(const char *host)
{
    unsigned char addr[16];
    if (strcasecmp(host, "localhost") == 0 || strcasecmp(host, "localhost.") == 0)
        return 1;
    if (inet_pton(AF_INET, host, addr) == 1)
        return addr[0] == 127;
    if (inet_pton(AF_INET6, host, addr) == 1) {
        static const unsigned char v6_loopback[16] = {[15] = 1};
        static const unsigned char v4_mapped[12] = {[10] = 0xff, [11] = 0xff};
        return memcmp(addr, v6_loopback, 16) == 0 || (memcmp(addr, v4_mapped, 12) == 0 && addr[12] == 127);
    }
    return 0;
}

static int finish(struct config *cfg, char *err, size_t errlen)
{
    const char *token_env = getenv("PGTANDEM_ADMIN_TOKEN");
    if (!cfg->admin_token && token_env && *token_env)
        set_str(&cfg->admin_token, token_env);
    if (cfg->admin_token && !*cfg->admin_token)
        set_str(&cfg->admin_token, NULL);
    /* Without a token anyone who reaches the port can pause traffic and
     * run migrations (SQL as the engine role): only this host may. */
    if (!cfg->admin_off && !cfg->admin_token && !config_host_is_loopback(cfg->admin_host)) {
        snprintf(err, errlen, "the admin API would listen on %s:%d, beyond this host, with no token: set "
                 "PGTANDEM_ADMIN_TOKEN (or --admin-token, \"admin_token\"), or listen on 127.0.0.1",
                 cfg->admin_host, cfg->admin_port);
        return -1;
    }
    const char *db_env = getenv("PGTANDEM_DB");
    if (!db_env || !*db_env)
        db_env = getenv("DATABASE_URL");
    if (!cfg->engine_db && db_env && *db_env)
        set_str(&cfg->engine_db, db_env);
    if (!cfg->upstream_uri) {
        snprintf(err, errlen, "no upstream: give --upstream postgresql://HOST:PORT/?sslmode=require or \"upstream\" in the config file");
        return -1;
    }
    if (!cfg->tls_cert != !cfg->tls_key) {
        snprintf(err, errlen, "--tls-cert and --tls-key go together");
        return -1;
    }
    if (!cfg->peer_given) { /* beside the clients' address, on whatever port is free */
        set_str(&cfg->peer_host, cfg->listen_host);
        cfg->peer_port = 0;
    }
    /* a pooled server connection is logged in by the proxy, for whichever
     * client borrows it: only a client the proxy authenticated may */
    if (cfg->pool_transaction && !cfg->auth_scram) {
        snprintf(err, errlen, "pool_mode transaction needs auth scram (--auth scram and a users file): the proxy "
                              "logs in its server connections itself");
        return -1;
    }
    if (cfg->auth_query && !cfg->auth_scram) {
        snprintf(err, errlen, "--auth-query needs --auth scram: the proxy checks the verifier it looks up");
        return -1;
    }
    if (cfg->auth_query && !cfg->auth_query_db && cfg->engine_db)
        set_str(&cfg->auth_query_db, cfg->engine_db);
    if (cfg->auth_query && !cfg->auth_query_db) {
        snprintf(err, errlen, "--auth-query needs a connection to run on: --auth-query-db URI (or --engine-db)");
        return -1;
    }
    /* with roles from the database, a users file is optional */
    if (cfg->auth_scram && !cfg->users_file && !cfg->auth_query)
        set_str(&cfg->users_file, "config/users.json");
    if (!cfg->client_tls_given)
        cfg->client_tls = cfg->tls_cert ? CLIENT_TLS_ALLOW : CLIENT_TLS_DISABLE;
    if (cfg->client_tls != CLIENT_TLS_DISABLE && !cfg->tls_cert) {
        snprintf(err, errlen, "client TLS '%s' needs --tls-cert and --tls-key",
                 cfg->client_tls == CLIENT_TLS_REQUIRE ? "require" : "allow");
        return -1;
    }
    return parse_upstream_uri(cfg, err, errlen);
}

int config_from_args(struct config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--config") == 0)
            set_str(&cfg->config_path, argv[i + 1]);
        if (strcmp(argv[i], "--pgbouncer-ini") == 0)
            set_str(&cfg->pgbouncer_ini, argv[i + 1]);
    }
    if (cfg->pgbouncer_ini && load_pgbouncer_ini(cfg, cfg->pgbouncer_ini, err, errlen) != 0)
        return -1;
    if (cfg->config_path && load_file(cfg, cfg->config_path, err, errlen) != 0)
        return -1;
    if (apply_flags(cfg, argc, argv, err, errlen) != 0)
        return -1;
    return finish(cfg, err, errlen);
}

int config_reload(struct config *cfg, char *err, size_t errlen)
{
    if (!cfg->config_path)
        return 0;
    struct config fresh;
    config_init(&fresh);
    int rc = load_file(&fresh, cfg->config_path, err, errlen);
    if (rc == 0) {
        cfg->log_level = fresh.log_level;
        if (fresh.tls_cert && fresh.tls_key) {
            set_str(&cfg->tls_cert, fresh.tls_cert);
            set_str(&cfg->tls_key, fresh.tls_key);
        }
    }
    config_free(&fresh);
    return rc;
}

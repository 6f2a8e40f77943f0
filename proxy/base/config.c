/* Configuration: a JSON file (config/pgtandem.json) overridden by flags.
 * Errors name the file, line and column, so an operator can fix them without
 * guessing. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "settings.h"

#define DEFAULT_LISTEN_PORT 6432
#define DEFAULT_ADMIN_PORT 6433

static void set_str(char **slot, const char *value)
{
    free(*slot);
    *slot = value ? strdup(value) : NULL;
}

/* The numeric settings, already validated against the settings table. */
static void config_set_number(struct config *cfg, const struct setting *st, double v)
{
    if (!strcmp(st->name, "max_message_bytes"))
        cfg->max_message_bytes = (uint32_t)v;
    else if (!strcmp(st->name, "buffer_bytes"))
        cfg->buffer_bytes = (size_t)v;
    else if (!strcmp(st->name, "shutdown_timeout_s"))
        cfg->shutdown_timeout_ms = (int)v * 1000;
    else if (!strcmp(st->name, "client_login_timeout_s"))
        cfg->client_login_timeout_ms = (int)v * 1000;
    else if (!strcmp(st->name, "cancel_wait_timeout_s"))
        cfg->cancel_wait_timeout_ms = (int)v * 1000;
    else if (!strcmp(st->name, "source_failures_per_s"))
        cfg->source_failures_per_s = (int)v;
    else if (!strcmp(st->name, "admin_request_timeout_s"))
        cfg->admin_request_timeout_s = (int)v;
    else if (!strcmp(st->name, "fleet_lease_ms"))
        cfg->fleet_lease_ms = (int)v;
    else if (!strcmp(st->name, "pool_size"))
        cfg->pool_size = (int)v;
    else if (!strcmp(st->name, "max_client_conn"))
        cfg->max_client_conn = (int)v;
    else if (!strcmp(st->name, "max_db_connections"))
        cfg->max_db_connections = (int)v;
    else if (!strcmp(st->name, "query_wait_timeout_s"))
        cfg->query_wait_timeout_ms = (int)v * 1000;
    else if (!strcmp(st->name, "server_idle_timeout_s"))
        cfg->server_idle_timeout_ms = (int)v * 1000;
    else if (!strcmp(st->name, "server_lifetime_s"))
        cfg->server_lifetime_ms = (int)v * 1000;
    else if (!strcmp(st->name, "max_prepared_statements"))
        cfg->max_prepared_statements = (int)v;
}

static int parse_pool_mode(const char *s, int *transaction)
{
    if (strcmp(s, "session") == 0)
        *transaction = 0;
    else if (strcmp(s, "transaction") == 0)
        *transaction = 1;
    else
        return -1;
    return 0;
}

void config_init(struct config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    set_str(&cfg->listen_host, "127.0.0.1");
    cfg->listen_port = DEFAULT_LISTEN_PORT;
    set_str(&cfg->admin_host, "127.0.0.1");
    cfg->admin_port = DEFAULT_ADMIN_PORT;
    for (const struct setting *st = SETTINGS; st->name; st++)
        if (st->scope == SETTING_PROXY)
            config_set_number(cfg, st, st->def);
    cfg->log_level = LOG_LEVEL_INFO;
    cfg->upstream_tls = UPSTREAM_TLS_REQUIRE;
}

void config_free(struct config *cfg)
{
    char **strings[] = {&cfg->config_path, &cfg->listen_host, &cfg->unix_socket_dir, &cfg->upstream_uri,
                        &cfg->upstream_host, &cfg->upstream_ca, &cfg->admin_host, &cfg->admin_token,
                        &cfg->tls_cert, &cfg->tls_key, &cfg->engine_db, &cfg->fleet_id,
                        &cfg->users_file, &cfg->neon_endpoint, &cfg->upstream_hostaddr, &cfg->peer_host};
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++)
        set_str(strings[i], NULL);
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

/* "HOST:PORT" or "off" for the peer listener. */
static int parse_peer_listen(struct config *cfg, const char *text, char *err, size_t errlen)
{
    cfg->peer_given = 1;
    if (strcmp(text, "off") == 0) {
        set_str(&cfg->peer_host, NULL);
        cfg->peer_port = 0;
        return 0;
    }
    char why[256];
    if (parse_host_port(text, &cfg->peer_host, &cfg->peer_port, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s (give HOST:PORT, port 0 for any free port, or off)", why);
        return -1;
    }
    return 0;
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

static int parse_auth(const char *v, int *scram)
{
    if (strcmp(v, "passthrough") != 0 && strcmp(v, "scram") != 0)
        return -1;
    *scram = strcmp(v, "scram") == 0;
    return 0;
}

static int parse_client_tls(const char *v, enum client_tls_mode *out)
{
    static const char *const names[] = {"disable", "allow", "require"};
    for (int i = 0; i < 3; i++)
        if (strcmp(v, names[i]) == 0) {
            *out = (enum client_tls_mode)i;
            return 0;
        }
    return -1;
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

static int take_string(struct file_ctx *fc, json_t *v, const char *key, char **slot)
{
    if (!json_is_string(v))
        return key_error(fc, key, "must be a string");
    set_str(slot, json_string_value(v));
    return *slot ? 0 : key_error(fc, key, "out of memory");
}

static int take_setting(struct config *cfg, struct file_ctx *fc, json_t *v, const struct setting *st)
{
    double value;
    char why[256];
    if (setting_from_json(st, v, &value, why, sizeof why) != 0)
        return key_error(fc, st->name, why);
    config_set_number(cfg, st, value);
    return 0;
}

static int apply_file_key(struct config *cfg, struct file_ctx *fc, const char *key, json_t *v)
{
    char *s = NULL;
    int rc = 0;
    const struct setting *st = setting_by_name(SETTING_PROXY, key);
    if (st) {
        rc = take_setting(cfg, fc, v, st);
    } else if (strcmp(key, "listen") == 0 || strcmp(key, "admin") == 0) {
        if ((rc = take_string(fc, v, key, &s)) == 0) {
            int is_admin = key[0] == 'a';
            char perr[256];
            rc = parse_host_port(s, is_admin ? &cfg->admin_host : &cfg->listen_host,
                                 is_admin ? &cfg->admin_port : &cfg->listen_port, perr, sizeof perr);
            if (rc)
                key_error(fc, key, perr);
        }
    } else if (strcmp(key, "peer_listen") == 0) {
        char perr[384];
        if ((rc = take_string(fc, v, key, &s)) == 0 && (rc = parse_peer_listen(cfg, s, perr, sizeof perr)) != 0)
            key_error(fc, key, perr);
    } else if (strcmp(key, "upstream") == 0) {
        rc = take_string(fc, v, key, &cfg->upstream_uri);
    } else if (strcmp(key, "auth") == 0) {
        if ((rc = take_string(fc, v, key, &s)) == 0 && parse_auth(s, &cfg->auth_scram) != 0)
            rc = key_error(fc, key, "must be \"passthrough\" or \"scram\"");
    } else if (strcmp(key, "pool_mode") == 0) {
        if ((rc = take_string(fc, v, key, &s)) == 0 && parse_pool_mode(s, &cfg->pool_transaction) != 0)
            rc = key_error(fc, key, "must be \"session\" or \"transaction\"");
    } else if (strcmp(key, "users_file") == 0) {
        rc = take_string(fc, v, key, &cfg->users_file);
    } else if (strcmp(key, "neon_endpoint") == 0) {
        rc = take_string(fc, v, key, &cfg->neon_endpoint);
    } else if (strcmp(key, "engine_db") == 0) {
        rc = take_string(fc, v, key, &cfg->engine_db);
    } else if (strcmp(key, "fleet_id") == 0) {
        rc = take_string(fc, v, key, &cfg->fleet_id);
    } else if (strcmp(key, "admin_token") == 0) {
        rc = take_string(fc, v, key, &cfg->admin_token);
    } else if (strcmp(key, "tls_cert") == 0) {
        rc = take_string(fc, v, key, &cfg->tls_cert);
    } else if (strcmp(key, "tls_key") == 0) {
        rc = take_string(fc, v, key, &cfg->tls_key);
    } else if (strcmp(key, "unix_socket") == 0) {
        rc = take_string(fc, v, key, &cfg->unix_socket_dir);
    } else if (strcmp(key, "client_tls") == 0) {
        if ((rc = take_string(fc, v, key, &s)) == 0 && parse_client_tls(s, &cfg->client_tls) != 0)
            rc = key_error(fc, key, "must be \"disable\", \"allow\" or \"require\"");
        cfg->client_tls_given = 1;
    } else if (strcmp(key, "log_level") == 0) {
        if ((rc = take_string(fc, v, key, &s)) == 0 && log_level_parse(s, &cfg->log_level) != 0)
            rc = key_error(fc, key, "must be \"error\", \"warn\", \"info\" or \"debug\"");
    } else if (strcmp(key, "log_format") == 0) {
        if ((rc = take_string(fc, v, key, &s)) == 0 && log_format_parse(s, &cfg->log_format) != 0)
            rc = key_error(fc, key, "must be \"text\" or \"json\"");
    } else {
        char known[1100], numbers[600];
        setting_names(SETTING_PROXY, numbers, sizeof numbers);
        snprintf(known, sizeof known, "unknown setting (known: listen, upstream, admin, admin_token, tls_cert, "
                                      "tls_key, client_tls, unix_socket, log_level, log_format, engine_db, auth, users_file, "
                                      "neon_endpoint, peer_listen, fleet_id, pool_mode, %s)", numbers);
        rc = key_error(fc, key, known);
    }
    free(s);
    return rc;
}

static char *read_whole_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *grown = realloc(buf, cap);
            if (!grown) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = grown;
        }
        size_t n = fread(buf + len, 1, 4096, f);
        len += n;
        if (n < 4096)
            break;
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

static int load_file(struct config *cfg, const char *path, char *err, size_t errlen)
{
    char *text = read_whole_file(path);
    if (!text) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
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

static const char *const flag_names[] = {"--config", "--listen", "--upstream", "--admin", "--admin-token",
                                         "--tls-cert", "--tls-key", "--client-tls", "--unix-socket",
                                         "--log-level", "--engine-db", "--auth", "--users-file",
                                         "--neon-endpoint", "--fleet-id", "--peer-listen", "--pool-mode",
                                         "--log-format", NULL};

static int is_known_flag(const char *arg)
{
    for (int i = 0; flag_names[i]; i++)
        if (strcmp(arg, flag_names[i]) == 0)
            return 1;
    return setting_by_flag(arg) != NULL;
}

static int apply_flag(struct config *cfg, const char *flag, const char *v, char *err, size_t errlen)
{
    if (strcmp(flag, "--listen") == 0)
        return parse_host_port(v, &cfg->listen_host, &cfg->listen_port, err, errlen);
    if (strcmp(flag, "--admin") == 0)
        return parse_host_port(v, &cfg->admin_host, &cfg->admin_port, err, errlen);
    if (strcmp(flag, "--peer-listen") == 0) {
        char why[384];
        if (parse_peer_listen(cfg, v, why, sizeof why) == 0)
            return 0;
        snprintf(err, errlen, "--peer-listen: %s", why);
        return -1;
    }
    if (strcmp(flag, "--upstream") == 0)
        set_str(&cfg->upstream_uri, v);
    else if (strcmp(flag, "--admin-token") == 0)
        set_str(&cfg->admin_token, v);
    else if (strcmp(flag, "--engine-db") == 0)
        set_str(&cfg->engine_db, v);
    else if (strcmp(flag, "--users-file") == 0)
        set_str(&cfg->users_file, v);
    else if (strcmp(flag, "--neon-endpoint") == 0)
        set_str(&cfg->neon_endpoint, v);
    else if (strcmp(flag, "--fleet-id") == 0)
        set_str(&cfg->fleet_id, v);
    else if (strcmp(flag, "--pool-mode") == 0) {
        if (parse_pool_mode(v, &cfg->pool_transaction) != 0) {
            snprintf(err, errlen, "--pool-mode: '%s' is not session or transaction", v);
            return -1;
        }
    } else if (strcmp(flag, "--auth") == 0) {
        if (parse_auth(v, &cfg->auth_scram) != 0) {
            snprintf(err, errlen, "--auth: '%s' is not passthrough or scram", v);
            return -1;
        }
    }
    else if (strcmp(flag, "--tls-cert") == 0)
        set_str(&cfg->tls_cert, v);
    else if (strcmp(flag, "--tls-key") == 0)
        set_str(&cfg->tls_key, v);
    else if (strcmp(flag, "--unix-socket") == 0)
        set_str(&cfg->unix_socket_dir, v);
    else if (strcmp(flag, "--client-tls") == 0) {
        cfg->client_tls_given = 1;
        if (parse_client_tls(v, &cfg->client_tls) != 0) {
            snprintf(err, errlen, "--client-tls: '%s' is not disable, allow or require", v);
            return -1;
        }
    } else if (strcmp(flag, "--log-format") == 0) {
        if (log_format_parse(v, &cfg->log_format) != 0) {
            snprintf(err, errlen, "--log-format: '%s' is not text or json", v);
            return -1;
        }
    } else if (strcmp(flag, "--log-level") == 0) {
        if (log_level_parse(v, &cfg->log_level) != 0) {
            snprintf(err, errlen, "--log-level: '%s' is not error, warn, info or debug", v);
            return -1;
        }
    } else {
        const struct setting *st = setting_by_flag(flag);
        double value;
        char why[256];
        if (!st || setting_from_text(st, v, &value, why, sizeof why) != 0) {
            snprintf(err, errlen, "%s: %s", flag, st ? why : "unknown option");
            return -1;
        }
        config_set_number(cfg, st, value);
    }
    return 0;
}

static int apply_flags(struct config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    for (int i = 1; i < argc; i += 2) {
        if (!is_known_flag(argv[i])) {
            snprintf(err, errlen, "unknown option '%s'", argv[i]);
            return -1;
        }
        if (i + 1 >= argc) {
            snprintf(err, errlen, "option '%s' needs a value", argv[i]);
            return -1;
        }
        if (strcmp(argv[i], "--config") != 0 && apply_flag(cfg, argv[i], argv[i + 1], err, errlen) != 0)
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
    if (cfg->admin_port && !cfg->admin_token && !config_host_is_loopback(cfg->admin_host)) {
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
    if (cfg->auth_scram && !cfg->users_file)
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
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--config") == 0)
            set_str(&cfg->config_path, argv[i + 1]);
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

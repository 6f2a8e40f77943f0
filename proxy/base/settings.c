/* The settings table and its one validation (see settings.h). */
#include "settings.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_MS 3600000.0

const struct setting SETTINGS[] = {
    {"max_message_bytes", "--max-message-bytes", SETTING_INT, 1024, 2147483647.0, 1073741824.0, 0, SETTING_PROXY,
     "bytes",
     "largest client message accepted; a larger one (or one under 4 bytes) closes that connection with 08P01"},
    {"buffer_bytes", "--buffer-bytes", SETTING_INT, 4096, 67108864.0, 262144.0, 0, SETTING_PROXY, "bytes",
     "per-direction buffer before backpressure"},
    {"shutdown_timeout_s", "--shutdown-timeout", SETTING_INT, 0, 86400, 30, 0, SETTING_PROXY, "s",
     "SIGTERM waits this long for open transactions"},
    {"client_login_timeout_s", "--client-login-timeout", SETTING_INT, 0, 86400, 60, 0, SETTING_PROXY, "s",
     "a client must send its startup packet, finish TLS and log in within it (0: no limit)"},
    {"cancel_wait_timeout_s", "--cancel-wait-timeout", SETTING_INT, 1, 3600, 10, 0, SETTING_PROXY, "s",
     "a CancelRequest's connection stays open this long waiting for the cancel's delivery"},
    {"source_failures_per_s", "--source-failures-per-s", SETTING_INT, 1, 1000000, 10, 0, SETTING_PROXY, "/s",
     "unmatched or forwarded cancels and bad startup packets one source address may send (burst 5x)"},
    {"admin_request_timeout_s", "--admin-request-timeout", SETTING_INT, 1, 86400, 30, 0, SETTING_PROXY, "s",
     "an admin API request must arrive whole within it"},
    {"fleet_lease_ms", "--fleet-lease-ms", SETTING_INT, 300, 600000, 3000, 0, SETTING_PROXY, "ms",
     "a proxy that has not renewed its lease (pgtandem.fleet_leases) for this long is out of the fleet"},
    /* transaction pooling (pool_mode "transaction"); max_client_conn holds in both modes */
    {"pool_size", "--pool-size", SETTING_INT, 1, 10000, 20, 0, SETTING_PROXY, "server connections",
     "transaction mode: server connections per pool"},
    {"max_client_conn", "--max-client-conn", SETTING_INT, 1, 1000000, 10000, 0, SETTING_PROXY, "clients",
     "client connections, in either pool mode; one more gets 53300"},
    {"max_db_connections", "--max-db-connections", SETTING_INT, 0, 100000, 0, 0, SETTING_PROXY,
     "server connections, 0: pool_size per pool",
     "transaction mode: server connections per database over all its pools"},
    {"query_wait_timeout_s", "--query-wait-timeout", SETTING_INT, 0, 86400, 120, 0, SETTING_PROXY, "s",
     "transaction mode: a client waits this long for a server connection before 53300 (0: forever)"},
    {"server_idle_timeout_s", "--server-idle-timeout", SETTING_INT, 0, 86400, 600, 0, SETTING_PROXY, "s",
     "transaction mode: an idle server connection is closed after it (0: never)"},
    {"server_lifetime_s", "--server-lifetime", SETTING_INT, 0, 604800, 3600, 0, SETTING_PROXY, "s",
     "transaction mode: a server connection this old is closed between transactions (0: never)"},
    {"server_login_retry_s", "--server-login-retry", SETTING_INT, 0, 3600, 15, 0, SETTING_PROXY, "s",
     "transaction mode: after a server login fails, clients finding no server are refused at once for this long, "
     "then a login is tried again"},
    {"max_prepared_statements", "--max-prepared-statements", SETTING_INT, 1, 100000, 200, 0, SETTING_PROXY,
     "statements per server connection",
     "transaction mode: clients' named statements kept prepared per server connection"},
    {"auth_query_cache_s", "--auth-query-cache", SETTING_INT, 0, 86400, 60, 0, SETTING_PROXY, "s",
     "an --auth-query answer (a verifier, or no such role) is reused this long (0: asked at every login)"},
    {"max_rows_per_sec", NULL, SETTING_INT, 0, 1e9, 0, 1, SETTING_THROTTLE, "rows/s",
     "backfill rows per second at most (0: no limit)"},
    {"target_ms", NULL, SETTING_INT, 1, 60000, 50, 1, SETTING_THROTTLE, "ms",
     "the backfill sizes its batches to take about this long"},
    {"sleep_ratio", NULL, SETTING_NUMBER, 0, 100, 0, 1, SETTING_THROTTLE, "x batch time",
     "the backfill sleeps this many times its batch's time after each batch"},
    {"max_app_p99_ms", NULL, SETTING_INT, 0, MAX_MS, 0, 1, SETTING_THROTTLE, "ms",
     "the backfill waits while the application's p99 latency is above it (0: off)"},
    {"max_replica_lag_ms", NULL, SETTING_INT, 0, MAX_MS, 0, 1, SETTING_THROTTLE, "ms",
     "the backfill waits while a replica lags more than this (0: off)"},
    {"paused", NULL, SETTING_BOOL, 0, 1, 0, 1, SETTING_THROTTLE, "",
     "the backfill is paused"},
    /* 2: the database's cores are not known from here (a managed compute may
     * have one); a second batch at once is what a 2-core server gains from,
     * and any throttle takes it back to one */
    {"backfill_workers", NULL, SETTING_INT, 1, 16, 2, 1, SETTING_THROTTLE, "connections",
     "batches the backfill runs at once, each key range on its own connection; one while any throttle holds"},
    {"timeout_ms", NULL, SETTING_INT, 1, 600000, 2000, 0, SETTING_QUERY, "ms",
     "POST /pause: traffic is held at most this long"},
    {"drain_timeout_ms", NULL, SETTING_INT, 1, 600000, 2000, 0, SETTING_QUERY, "ms",
     "the cutover holds traffic at most this long while transactions finish"},
    {"lock_timeout_ms", NULL, SETTING_INT, 1, 600000, 200, 0, SETTING_QUERY, "ms",
     "the contract's lock_timeout"},
    {"statement_budget_ms", NULL, SETTING_INT, 1, MAX_MS, 5000, 0, SETTING_QUERY, "ms",
     "the contract's statement_timeout"},
    {"attempts", NULL, SETTING_INT, 1, 1000, 10, 0, SETTING_QUERY, "",
     "contract attempts before giving up"},
    {"force", NULL, SETTING_BOOL, 0, 1, 0, 0, SETTING_QUERY, "",
     "go on despite sessions that bypass the proxies"},
    /* a week at most: the old shape's columns cost writes until finalize */
    {"revert_window_s", NULL, SETTING_INT, 0, 604800, 0, 0, SETTING_QUERY, "s",
     "complete keeps the old shape this long for a revert"},
    {NULL, NULL, SETTING_INT, 0, 0, 0, 0, SETTING_PROXY, NULL, NULL},
};

const struct setting *setting_by_name(enum setting_scope scope, const char *name)
{
    for (const struct setting *s = SETTINGS; s->name; s++)
        if (s->scope == scope && strcmp(s->name, name) == 0)
            return s;
    return NULL;
}

const struct setting *setting_by_flag(const char *flag)
{
    for (const struct setting *s = SETTINGS; s->name; s++)
        if (s->flag && strcmp(s->flag, flag) == 0)
            return s;
    return NULL;
}

void setting_names(enum setting_scope scope, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = '\0';
    for (const struct setting *s = SETTINGS; s->name; s++) {
        if (s->scope != scope)
            continue;
        int n = snprintf(out + used, cap - used, "%s%s", used ? ", " : "", s->name);
        if (n < 0 || (size_t)n >= cap - used)
            return;
        used += (size_t)n;
    }
}

void setting_describe(const struct setting *s, char *out, size_t cap)
{
    if (s->type == SETTING_BOOL)
        snprintf(out, cap, "true or false, default %s", s->def != 0 ? "true" : "false");
    else
        snprintf(out, cap, "%s from %.15g to %.15g%s%s, default %.15g", s->type == SETTING_INT ? "integer" : "number",
                 s->min, s->max, s->unit[0] ? " " : "", s->unit, s->def);
}

static int refuse(const struct setting *s, const char *shown, char *err, size_t errlen)
{
    const char *what = s->scope == SETTING_QUERY ? "query parameter" : "setting";
    if (s->type == SETTING_BOOL)
        snprintf(err, errlen, "%s \"%s\": %s is not true or false%s", what, s->name, shown,
                 s->scope == SETTING_QUERY ? " (or 1/0, yes/no, on/off)" : "");
    else
        snprintf(err, errlen, "%s \"%s\": %s is not %s from %.15g to %.15g%s%s%s", what, s->name, shown,
                 s->type == SETTING_INT ? "an integer" : "a number", s->min, s->max, s->unit[0] ? " (" : "",
                 s->unit, s->unit[0] ? ")" : "");
    return -1;
}

static int in_range(const struct setting *s, double v)
{
    return isfinite(v) && v >= s->min && v <= s->max && (s->type != SETTING_INT || v == floor(v));
}

/* The words Postgres and most shells' tools take for a boolean; -1: none. */
static int text_bool(const char *text)
{
    static const char *const yes[] = {"true", "1", "yes", "on"}, *const no[] = {"false", "0", "no", "off"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(text, yes[i]) == 0)
            return 1;
        if (strcasecmp(text, no[i]) == 0)
            return 0;
    }
    return -1;
}

int setting_from_text(const struct setting *s, const char *text, double *out, char *err, size_t errlen)
{
    char shown[64];
    snprintf(shown, sizeof shown, "'%s'", text);
    if (s->type == SETTING_BOOL) {
        int b = text_bool(text);
        if (b < 0)
            return refuse(s, shown, err, errlen);
        *out = b;
        return 0;
    }
    char *end;
    double v = strtod(text, &end);
    if (end == text || *end || !in_range(s, v))
        return refuse(s, shown, err, errlen);
    *out = v;
    return 0;
}

int setting_from_json(const struct setting *s, const json_t *v, double *out, char *err, size_t errlen)
{
    char shown[64];
    char *dumped = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    snprintf(shown, sizeof shown, "%s", dumped ? dumped : "?");
    free(dumped);
    if (s->type == SETTING_BOOL) {
        if (!json_is_boolean(v))
            return refuse(s, shown, err, errlen);
        *out = json_is_true(v);
        return 0;
    }
    if (!json_is_number(v) || (s->type == SETTING_INT && !json_is_integer(v)) || !in_range(s, json_number_value(v)))
        return refuse(s, shown, err, errlen);
    *out = json_number_value(v);
    return 0;
}

/* ---- the backfill's live settings ---- */

void settings_throttle_defaults(struct throttle_settings *t)
{
    memset(t, 0, sizeof *t);
    t->target_ms = (long)setting_by_name(SETTING_THROTTLE, "target_ms")->def;
    t->workers = (long)setting_by_name(SETTING_THROTTLE, "backfill_workers")->def;
}

static void assign(struct throttle_settings *t, const char *name, double v)
{
    if (!strcmp(name, "max_rows_per_sec"))
        t->max_rows_per_sec = (long)v;
    else if (!strcmp(name, "target_ms"))
        t->target_ms = (long)v;
    else if (!strcmp(name, "sleep_ratio"))
        t->sleep_ratio = v;
    else if (!strcmp(name, "max_app_p99_ms"))
        t->max_app_p99_ms = (long)v;
    else if (!strcmp(name, "max_replica_lag_ms"))
        t->max_replica_lag_ms = (long)v;
    else if (!strcmp(name, "paused"))
        t->paused = v != 0;
    else if (!strcmp(name, "backfill_workers"))
        t->workers = (long)v;
}

static int update_from_object(struct throttle_settings *t, const json_t *in, char *err, size_t errlen)
{
    if (!json_is_object(in)) {
        snprintf(err, errlen, "the body must be a JSON object of settings");
        return -1;
    }
    struct throttle_settings next = *t;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)in, key, v) {
        const struct setting *s = setting_by_name(SETTING_THROTTLE, key);
        double value = 0;
        if (!s) {
            char known[256];
            setting_names(SETTING_THROTTLE, known, sizeof known);
            snprintf(err, errlen, "unknown setting \"%s\" (known: %s)", key, known);
            return -1;
        }
        if (setting_from_json(s, v, &value, err, errlen) != 0)
            return -1;
        assign(&next, key, value);
    }
    *t = next;
    return 0;
}

int settings_throttle_update(struct throttle_settings *t, const char *json, size_t len, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *in = json ? json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    if (!in) {
        snprintf(err, errlen, "the body is not JSON: %s", json ? jerr.text : "empty");
        return -1;
    }
    int rc = update_from_object(t, in, err, errlen);
    json_decref(in);
    return rc;
}

json_t *settings_throttle_json(const struct throttle_settings *t)
{
    return json_pack("{s:I,s:I,s:f,s:I,s:I,s:b,s:I}", "max_rows_per_sec", (json_int_t)t->max_rows_per_sec,
                     "target_ms", (json_int_t)t->target_ms, "sleep_ratio", t->sleep_ratio, "max_app_p99_ms",
                     (json_int_t)t->max_app_p99_ms, "max_replica_lag_ms", (json_int_t)t->max_replica_lag_ms,
                     "paused", t->paused, "backfill_workers", (json_int_t)t->workers);
}

char *settings_throttle_dump(const struct throttle_settings *t)
{
    json_t *o = settings_throttle_json(t);
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    return text;
}

int settings_throttle_load(struct throttle_settings *t, const char *json, char *err, size_t errlen)
{
    return settings_throttle_update(t, json, strlen(json), err, errlen);
}

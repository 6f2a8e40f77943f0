/* The settings table, its one validation, and the walk from a row to its
 * field (see settings.h). */
#include "settings.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"

#define MAX_MS 3600000.0

const struct setting SETTINGS[] = {
    {"max_message_bytes", "--max-message-bytes", SETTING_INT, 1024, 2147483647.0, 1073741824.0, 0, SETTING_PROXY,
     "bytes",
     "largest client message accepted; a larger one (or one under 4 bytes) closes that connection with 08P01",
     CONFIG_FIELD(max_message_bytes, 1)},
    {"buffer_bytes", "--buffer-bytes", SETTING_INT, 4096, 67108864.0, 262144.0, 0, SETTING_PROXY, "bytes",
     "per-direction buffer before backpressure",
     CONFIG_FIELD(buffer_bytes, 1)},
    {"shutdown_timeout_s", "--shutdown-timeout", SETTING_INT, 0, 86400, 30, 0, SETTING_PROXY, "s",
     "SIGTERM waits this long for open transactions",
     CONFIG_FIELD(shutdown_timeout_ms, 1000)},
    {"client_login_timeout_s", "--client-login-timeout", SETTING_INT, 0, 86400, 60, 0, SETTING_PROXY, "s",
     "a client must send its startup packet, finish TLS and log in within it (0: no limit)",
     CONFIG_FIELD(client_login_timeout_ms, 1000)},
    {"cancel_wait_timeout_s", "--cancel-wait-timeout", SETTING_INT, 1, 3600, 10, 0, SETTING_PROXY, "s",
     "a CancelRequest's connection stays open this long waiting for the cancel's delivery",
     CONFIG_FIELD(cancel_wait_timeout_ms, 1000)},
    {"source_failures_per_s", "--source-failures-per-s", SETTING_INT, 1, 1000000, 10, 0, SETTING_PROXY, "/s",
     "unmatched or forwarded cancels and bad startup packets one source address may send (burst 5x)",
     CONFIG_FIELD(source_failures_per_s, 1)},
    {"admin_request_timeout_s", "--admin-request-timeout", SETTING_INT, 1, 86400, 30, 0, SETTING_PROXY, "s",
     "an admin API request must arrive whole within it",
     CONFIG_FIELD(admin_request_timeout_s, 1)},
    {"fleet_lease_ms", "--fleet-lease-ms", SETTING_INT, 300, 600000, 3000, 0, SETTING_PROXY, "ms",
     "a proxy that has not renewed its lease (pgtandem.fleet_leases) for this long is out of the fleet",
     CONFIG_FIELD(fleet_lease_ms, 1)},
    /* transaction pooling (pool_mode "transaction"); max_client_conn holds in both modes */
    {"pool_size", "--pool-size", SETTING_INT, 1, 10000, 20, 0, SETTING_PROXY, "server connections",
     "transaction mode: server connections per pool",
     CONFIG_FIELD(pool_size, 1)},
    {"max_client_conn", "--max-client-conn", SETTING_INT, 1, 1000000, 10000, 0, SETTING_PROXY, "clients",
     "client connections, in either pool mode; one more gets 53300",
     CONFIG_FIELD(max_client_conn, 1)},
    {"max_db_connections", "--max-db-connections", SETTING_INT, 0, 100000, 0, 0, SETTING_PROXY,
     "server connections, 0: pool_size per pool",
     "transaction mode: server connections per database over all its pools",
     CONFIG_FIELD(max_db_connections, 1)},
    {"query_wait_timeout_s", "--query-wait-timeout", SETTING_INT, 0, 86400, 120, 0, SETTING_PROXY, "s",
     "transaction mode: a client waits this long for a server connection before 53300 (0: forever)",
     CONFIG_FIELD(query_wait_timeout_ms, 1000)},
    {"server_idle_timeout_s", "--server-idle-timeout", SETTING_INT, 0, 86400, 600, 0, SETTING_PROXY, "s",
     "transaction mode: an idle server connection is closed after it (0: never)",
     CONFIG_FIELD(server_idle_timeout_ms, 1000)},
    {"server_lifetime_s", "--server-lifetime", SETTING_INT, 0, 604800, 3600, 0, SETTING_PROXY, "s",
     "transaction mode: a server connection this old is closed between transactions (0: never)",
     CONFIG_FIELD(server_lifetime_ms, 1000)},
    {"server_login_retry_s", "--server-login-retry", SETTING_INT, 0, 3600, 15, 0, SETTING_PROXY, "s",
     "transaction mode: after a server login fails, clients finding no server are refused at once for this long, "
     "then a login is tried again",
     CONFIG_FIELD(server_login_retry_ms, 1000)},
    {"max_prepared_statements", "--max-prepared-statements", SETTING_INT, 1, 100000, 200, 0, SETTING_PROXY,
     "statements per server connection",
     "transaction mode: clients' named statements kept prepared per server connection",
     CONFIG_FIELD(max_prepared_statements, 1)},
    {"auth_query_cache_s", "--auth-query-cache", SETTING_INT, 0, 86400, 60, 0, SETTING_PROXY, "s",
     "an --auth-query answer (a verifier, or no such role) is reused this long (0: asked at every login)",
     CONFIG_FIELD(auth_query_cache_ms, 1000)},
    {"max_rows_per_sec", NULL, SETTING_INT, 0, 1e9, 0, 1, SETTING_THROTTLE, "rows/s",
     "backfill rows per second at most (0: no limit)",
     THROTTLE_FIELD(max_rows_per_sec, 1)},
    {"target_ms", NULL, SETTING_INT, 1, 60000, 50, 1, SETTING_THROTTLE, "ms",
     "the backfill sizes its batches to take about this long",
     THROTTLE_FIELD(target_ms, 1)},
    {"sleep_ratio", NULL, SETTING_NUMBER, 0, 100, 0, 1, SETTING_THROTTLE, "x batch time",
     "the backfill sleeps this many times its batch's time after each batch",
     THROTTLE_FIELD(sleep_ratio, 1)},
    {"max_app_p99_ms", NULL, SETTING_INT, 0, MAX_MS, 0, 1, SETTING_THROTTLE, "ms",
     "an absolute limit on the application's p99 latency the backfill keeps; set, it replaces app_p99_budget (0: off)",
     THROTTLE_FIELD(max_app_p99_ms, 1)},
    /* 1.5: what the app's users do not notice; the baseline is measured by
     * the proxy, so an operator need not know the app's normal latency */
    {"app_p99_budget", NULL, SETTING_NUMBER, 0, 100, 1.5, 1, SETTING_THROTTLE, "x baseline p99",
     "the backfill keeps the app's p99 per route within this many times its p99 measured without it (0: off)",
     THROTTLE_FIELD(app_p99_budget, 1)},
    {"max_replica_lag_ms", NULL, SETTING_INT, 0, MAX_MS, 0, 1, SETTING_THROTTLE, "ms",
     "the backfill waits while a replica lags more than this (0: off)",
     THROTTLE_FIELD(max_replica_lag_ms, 1)},
    {"paused", NULL, SETTING_BOOL, 0, 1, 0, 1, SETTING_THROTTLE, "",
     "the backfill is paused",
     THROTTLE_FIELD(paused, 1)},
    /* 2: the database's cores are not known from here (a managed compute may
     * have one); a second batch at once is what a 2-core server gains from,
     * and any throttle takes it back to one */
    {"backfill_workers", NULL, SETTING_INT, 1, 16, 2, 1, SETTING_THROTTLE, "connections",
     "batches the backfill runs at once, each key range on its own connection; one while any throttle holds",
     THROTTLE_FIELD(workers, 1)},
    {"timeout_ms", NULL, SETTING_INT, 1, 600000, 2000, 0, SETTING_QUERY, "ms",
     "POST /pause: traffic is held at most this long",
     NO_FIELD},
    {"drain_timeout_ms", NULL, SETTING_INT, 1, 600000, 2000, 0, SETTING_QUERY, "ms",
     "the cutover holds traffic at most this long while transactions finish",
     NO_FIELD},
    {"lock_timeout_ms", NULL, SETTING_INT, 1, 600000, 200, 0, SETTING_QUERY, "ms",
     "the contract's lock_timeout",
     NO_FIELD},
    {"statement_budget_ms", NULL, SETTING_INT, 1, MAX_MS, 5000, 0, SETTING_QUERY, "ms",
     "the contract's statement_timeout",
     NO_FIELD},
    {"attempts", NULL, SETTING_INT, 1, 1000, 10, 0, SETTING_QUERY, "",
     "contract attempts before giving up",
     NO_FIELD},
    {"force", NULL, SETTING_BOOL, 0, 1, 0, 0, SETTING_QUERY, "",
     "go on despite sessions that bypass the proxies",
     NO_FIELD},
    /* a week at most: the old shape's columns cost writes until finalize */
    {"revert_window_s", NULL, SETTING_INT, 0, 604800, 0, 0, SETTING_QUERY, "s",
     "complete keeps the old shape this long for a revert",
     NO_FIELD},
    {NULL, NULL, SETTING_INT, 0, 0, 0, 0, SETTING_PROXY, NULL, NULL, NO_FIELD},
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

/* ---- from a row to its field ---- */

size_t setting_ctype_size(enum setting_ctype ctype)
{
    switch (ctype) {
    case SETTING_C_INT:
        return sizeof(int);
    case SETTING_C_UINT:
        return sizeof(unsigned int);
    case SETTING_C_LONG:
        return sizeof(long);
    case SETTING_C_ULONG:
        return sizeof(unsigned long);
    case SETTING_C_DOUBLE:
        return sizeof(double);
    case SETTING_C_NONE:
        break;
    }
    return 0;
}

/* The value is in range already (setting_from_text/json, or the table's own
 * default), and the unit test checks that every row's maximum, scaled, fits
 * its field: the casts cannot overflow. */
void setting_store(const struct setting *s, void *base, double value)
{
    void *at = (char *)base + s->field.offset;
    double v = value * s->field.scale;
    switch (s->field.ctype) {
    case SETTING_C_INT:
        *(int *)at = (int)v;
        break;
    case SETTING_C_UINT:
        *(unsigned int *)at = (unsigned int)v;
        break;
    case SETTING_C_LONG:
        *(long *)at = (long)v;
        break;
    case SETTING_C_ULONG:
        *(unsigned long *)at = (unsigned long)v;
        break;
    case SETTING_C_DOUBLE:
        *(double *)at = v;
        break;
    case SETTING_C_NONE:
        break;
    }
}

double setting_load(const struct setting *s, const void *base)
{
    const void *at = (const char *)base + s->field.offset;
    double v = 0;
    switch (s->field.ctype) {
    case SETTING_C_INT:
        v = *(const int *)at;
        break;
    case SETTING_C_UINT:
        v = *(const unsigned int *)at;
        break;
    case SETTING_C_LONG:
        v = (double)*(const long *)at;
        break;
    case SETTING_C_ULONG:
        v = (double)*(const unsigned long *)at;
        break;
    case SETTING_C_DOUBLE:
        v = *(const double *)at;
        break;
    case SETTING_C_NONE:
        return 0;
    }
    return v / s->field.scale;
}

void settings_defaults(enum setting_scope scope, void *base)
{
    for (const struct setting *s = SETTINGS; s->name; s++)
        if (s->scope == scope)
            setting_store(s, base, s->def);
}

/* ---- the backfill's live settings ---- */

void settings_throttle_defaults(struct throttle_settings *t)
{
    memset(t, 0, sizeof *t);
    settings_defaults(SETTING_THROTTLE, t);
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
        setting_store(s, &next, value);
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

static json_t *value_json(const struct setting *s, double v)
{
    switch (s->type) {
    case SETTING_INT:
        return json_integer((json_int_t)v);
    case SETTING_NUMBER:
        return json_real(v);
    case SETTING_BOOL:
        return json_boolean(v != 0);
    }
    return NULL;
}

json_t *settings_throttle_json(const struct throttle_settings *t)
{
    json_t *o = json_object();
    for (const struct setting *s = SETTINGS; o && s->name; s++) {
        if (s->scope == SETTING_THROTTLE && json_object_set_new(o, s->name, value_json(s, setting_load(s, t))) != 0) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
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

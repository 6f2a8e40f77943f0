/* Unit tests for the settings table's binding of each row to its field:
 * every proxy and throttle row names a field of the right size whose range
 * fits it; a value written through the table lands in the field this test
 * reads by name, at the right scale, and nowhere else; the defaults land;
 * out-of-range values are refused in the table's words and change nothing;
 * the throttle's JSON and its saved copy read the fields back. */
#include <float.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "config.h"
#include "settings.h"
#include "unit.h"

/* The fields by name, written out here rather than taken from the table,
 * each read back in the unit its setting is given in. A row this does not
 * know fails the tests below: a new setting adds its line here. */
#define FIELD(n, expr)             \
    if (!strcmp(name, n)) {        \
        *out = (double)(expr);     \
        return 1;                  \
    }

static int proxy_field(const struct config *c, const char *name, double *out)
{
    FIELD("max_message_bytes", c->max_message_bytes)
    FIELD("buffer_bytes", c->buffer_bytes)
    FIELD("shutdown_timeout_s", c->shutdown_timeout_ms / 1000.0)
    FIELD("client_login_timeout_s", c->client_login_timeout_ms / 1000.0)
    FIELD("cancel_wait_timeout_s", c->cancel_wait_timeout_ms / 1000.0)
    FIELD("source_failures_per_s", c->source_failures_per_s)
    FIELD("admin_request_timeout_s", c->admin_request_timeout_s)
    FIELD("fleet_lease_ms", c->fleet_lease_ms)
    FIELD("pool_size", c->pool_size)
    FIELD("max_client_conn", c->max_client_conn)
    FIELD("max_db_connections", c->max_db_connections)
    FIELD("query_wait_timeout_s", c->query_wait_timeout_ms / 1000.0)
    FIELD("server_idle_timeout_s", c->server_idle_timeout_ms / 1000.0)
    FIELD("server_lifetime_s", c->server_lifetime_ms / 1000.0)
    FIELD("server_reset_query_always", c->server_reset_always)
    FIELD("server_login_retry_s", c->server_login_retry_ms / 1000.0)
    FIELD("max_prepared_statements", c->max_prepared_statements)
    FIELD("auth_query_cache_s", c->auth_query_cache_ms / 1000.0)
    FIELD("auth_query_timeout_s", c->auth_query_timeout_ms / 1000.0)
    FIELD("auth_query_connections", c->auth_query_connections)
    return 0;
}

static int throttle_field(const struct throttle_settings *t, const char *name, double *out)
{
    FIELD("max_rows_per_sec", t->max_rows_per_sec)
    FIELD("target_ms", t->target_ms)
    FIELD("sleep_ratio", t->sleep_ratio)
    FIELD("max_app_p99_ms", t->max_app_p99_ms)
    FIELD("app_p99_budget", t->app_p99_budget)
    FIELD("app_p99_floor_ms", t->app_p99_floor_ms)
    FIELD("max_replica_lag_ms", t->max_replica_lag_ms)
    FIELD("paused", t->paused)
    FIELD("backfill_workers", t->workers)
    return 0;
}

static size_t scope_size(enum setting_scope scope)
{
    if (scope == SETTING_PROXY)
        return sizeof(struct config);
    return scope == SETTING_THROTTLE ? sizeof(struct throttle_settings) : 0;
}

static int every_row_names_a_field_of_its_size(void)
{
    int ok = 1;
    for (const struct setting *s = SETTINGS; s->name; s++) {
        const struct setting_field *f = &s->field;
        int bound = s->scope != SETTING_QUERY;
        if (bound != (f->ctype != SETTING_C_NONE) || (bound && !(f->scale > 0)) ||
            setting_ctype_size(f->ctype) != f->size || f->offset + f->size > scope_size(s->scope)) {
            printf("%s: ctype %d of %zu bytes, field of %zu at %zu, scale %g\n", s->name, (int)f->ctype,
                   setting_ctype_size(f->ctype), f->size, f->offset, f->scale);
            ok = 0;
        }
    }
    return ok;
}

/* The values a ctype holds. */
static void ctype_limits(enum setting_ctype ctype, double *lo, double *hi)
{
    *lo = 0;
    *hi = 0;
    switch (ctype) {
    case SETTING_C_INT:
        *lo = INT_MIN;
        *hi = INT_MAX;
        break;
    case SETTING_C_UINT:
        *hi = UINT_MAX;
        break;
    case SETTING_C_LONG:
        *lo = (double)LONG_MIN;
        *hi = (double)LONG_MAX;
        break;
    case SETTING_C_ULONG:
        *hi = (double)ULONG_MAX;
        break;
    case SETTING_C_DOUBLE:
        *lo = -DBL_MAX;
        *hi = DBL_MAX;
        break;
    case SETTING_C_NONE:
        break;
    }
}

/* The table's largest and smallest value, scaled, is one its field holds:
 * the casts in setting_store cannot overflow. */
static int every_range_fits_its_field(void)
{
    int ok = 1;
    for (const struct setting *s = SETTINGS; s->name; s++) {
        double lo, hi;
        ctype_limits(s->field.ctype, &lo, &hi);
        if (s->field.ctype != SETTING_C_NONE && (s->min * s->field.scale < lo || s->max * s->field.scale > hi)) {
            printf("%s: %g..%g (x %g) does not fit its field\n", s->name, s->min, s->max, s->field.scale);
            ok = 0;
        }
    }
    return ok;
}

/* A value in range, not the default, not 0: a field left alone, or written
 * at the wrong scale, cannot read as it. */
static double other_value(const struct setting *s)
{
    if (s->type == SETTING_BOOL)
        return s->def != 0 ? 0 : 1;
    if (s->type == SETTING_NUMBER)
        return s->max / 3;
    return s->max != s->def ? s->max : s->max - 1;
}

static int read_field(const struct setting *s, const void *base, double *out)
{
    if (s->scope == SETTING_PROXY)
        return proxy_field(base, s->name, out);
    return throttle_field(base, s->name, out);
}

/* Each row of `scope` written through the table into `base` (one struct of
 * scope_size bytes, at its defaults) reads back by name, and no byte
 * outside its field changed. */
static int writes_land_in_their_field(enum setting_scope scope, void *base)
{
    size_t size = scope_size(scope);
    unsigned char *before = malloc(size);
    int ok = before != NULL;
    for (const struct setting *s = SETTINGS; ok && s->name; s++) {
        if (s->scope != scope)
            continue;
        char text[64], err[256] = "";
        double given = other_value(s), parsed = -1, got = NAN;
        snprintf(text, sizeof text, "%.17g", given);
        memcpy(before, base, size);
        if (setting_from_text(s, text, &parsed, err, sizeof err) != 0) {
            printf("%s: '%s' refused: %s\n", s->name, text, err);
            ok = 0;
            break;
        }
        setting_store(s, base, parsed);
        if (!read_field(s, base, &got)) {
            printf("%s: the test does not know its field: add it to proxy_field/throttle_field\n", s->name);
            ok = 0;
        } else if (got != given || setting_load(s, base) != given) {
            printf("%s: stored %.17g, the field reads %.17g, the table reads %.17g\n", s->name, given, got,
                   setting_load(s, base));
            ok = 0;
        }
        for (size_t i = 0; ok && i < size; i++) {
            if ((i < s->field.offset || i >= s->field.offset + s->field.size) &&
                ((unsigned char *)base)[i] != before[i]) {
                printf("%s: byte %zu outside its field changed\n", s->name, i);
                ok = 0;
            }
        }
    }
    free(before);
    return ok;
}

static int defaults_land(enum setting_scope scope, const void *base)
{
    int ok = 1;
    for (const struct setting *s = SETTINGS; s->name; s++) {
        double got = NAN;
        if (s->scope != scope)
            continue;
        if (!read_field(s, base, &got) || got != s->def) {
            printf("%s: default %g, the field reads %g\n", s->name, s->def, got);
            ok = 0;
        }
    }
    return ok;
}

/* One past each end of every numeric row's range, and a fraction for an
 * integer: refused, naming the setting, the value and the range. */
static int out_of_range_is_refused(void)
{
    int ok = 1;
    for (const struct setting *s = SETTINGS; s->name; s++) {
        if (s->type == SETTING_BOOL)
            continue;
        double wrong[] = {s->min - 1, s->max + 1, s->type == SETTING_INT ? s->min + 0.5 : NAN};
        for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
            char text[64], err[256] = "", range[96];
            double v = 12345;
            snprintf(text, sizeof text, "%.17g", wrong[i]);
            snprintf(range, sizeof range, "from %.15g to %.15g", s->min, s->max);
            if (setting_from_text(s, text, &v, err, sizeof err) == 0 || v != 12345 || !strstr(err, s->name) ||
                !strstr(err, text) || !strstr(err, range)) {
                printf("%s: '%s' gave \"%s\"\n", s->name, text, err);
                ok = 0;
            }
        }
    }
    return ok;
}

static int config_from(char **argv, int argc, struct config *cfg, char *err, size_t errlen)
{
    config_init(cfg);
    return config_from_args(cfg, argc, argv, err, errlen);
}

static int config_file_and_flags_reach_the_fields(void)
{
    char path[] = "/tmp/pgtandem-test-settings-XXXXXX";
    int fd = mkstemp(path);
    static const char text[] = "{\"server_lifetime_s\": 5, \"buffer_bytes\": 8192, \"shutdown_timeout_s\": 9}\n";
    if (fd < 0 || write(fd, text, sizeof text - 1) != (ssize_t)(sizeof text - 1)) {
        printf("cannot write %s\n", path);
        if (fd >= 0)
            close(fd);
        return 0;
    }
    close(fd);
    char *argv[] = {"proxy", "--config", path, "--shutdown-timeout", "7", "--upstream", "postgresql://127.0.0.1:1/"};
    struct config cfg;
    char err[512] = "";
    int rc = config_from(argv, 7, &cfg, err, sizeof err);
    int ok = rc == 0 && cfg.server_lifetime_ms == 5000 && cfg.buffer_bytes == 8192 && cfg.shutdown_timeout_ms == 7000 &&
             cfg.pool_size == 20;
    if (!ok)
        printf("rc=%d err=%s lifetime=%d buffer=%zu shutdown=%d\n", rc, err, cfg.server_lifetime_ms, cfg.buffer_bytes,
               cfg.shutdown_timeout_ms);
    config_free(&cfg);
    unlink(path);
    return ok;
}

static int refused_flag(void)
{
    char *argv[] = {"proxy", "--shutdown-timeout", "86401", "--upstream", "postgresql://127.0.0.1:1/"};
    struct config cfg;
    char err[512] = "";
    int rc = config_from(argv, 5, &cfg, err, sizeof err);
    int ok = rc != 0 && cfg.shutdown_timeout_ms == 30000 &&
             !strcmp(err, "--shutdown-timeout: setting \"shutdown_timeout_s\": '86401' is not an integer from 0 to "
                          "86400 (s)");
    if (!ok)
        printf("rc=%d err=%s\n", rc, err);
    config_free(&cfg);
    return ok;
}

/* All or none: one refused key leaves every field as it was. */
static int refused_throttle_update_changes_nothing(void)
{
    struct throttle_settings t, before;
    settings_throttle_defaults(&t);
    before = t;
    char err[256] = "";
    static const char body[] = "{\"max_rows_per_sec\": 5, \"target_ms\": 0}";
    int rc = settings_throttle_update(&t, body, sizeof body - 1, err, sizeof err);
    int ok = rc != 0 && !memcmp(&t, &before, sizeof t) &&
             !strcmp(err, "setting \"target_ms\": 0 is not an integer from 1 to 60000 (ms)");
    if (!ok)
        printf("rc=%d err=%s max_rows_per_sec=%ld\n", rc, err, t.max_rows_per_sec);
    return ok;
}

/* The JSON the admin API shows and the state keeps: one key per throttle
 * row, of its type, at its default. */
static int throttle_json_has_every_row(const struct throttle_settings *t)
{
    json_t *o = settings_throttle_json(t);
    size_t rows = 0;
    int ok = o != NULL;
    for (const struct setting *s = SETTINGS; ok && s->name; s++) {
        if (s->scope != SETTING_THROTTLE)
            continue;
        rows++;
        json_t *v = json_object_get(o, s->name);
        int typed = s->type == SETTING_INT ? json_is_integer(v) : s->type == SETTING_NUMBER ? json_is_real(v)
                                                                                            : json_is_boolean(v);
        double got = json_is_boolean(v) ? json_is_true(v) : json_number_value(v);
        if (!typed || got != s->def) {
            printf("%s: %s\n", s->name, v ? "wrong type or value" : "missing");
            ok = 0;
        }
    }
    ok = ok && json_object_size(o) == rows;
    json_decref(o);
    return ok;
}

static int throttle_json_reads_the_fields(void)
{
    struct throttle_settings t, back;
    settings_throttle_defaults(&t);
    int ok = throttle_json_has_every_row(&t);
    /* as a proxy of the release before this table saved it */
    static const char saved[] = "{\"backfill_workers\":4,\"max_app_p99_ms\":250,\"max_replica_lag_ms\":0,"
                                "\"max_rows_per_sec\":1000000000,\"paused\":true,\"sleep_ratio\":2.5,\"target_ms\":50}";
    char err[256] = "";
    if (settings_throttle_load(&t, saved, err, sizeof err) != 0 || t.workers != 4 || t.sleep_ratio != 2.5 ||
        t.paused != 1 || t.max_app_p99_ms != 250 || t.max_rows_per_sec != 1000000000 || t.target_ms != 50) {
        printf("load: %s\n", err);
        return 0;
    }
    char *text = settings_throttle_dump(&t);
    settings_throttle_defaults(&back);
    if (!text || settings_throttle_load(&back, text, err, sizeof err) != 0 || memcmp(&t, &back, sizeof t) != 0) {
        printf("reloaded %s: %s\n", text ? text : "NULL", err);
        ok = 0;
    }
    free(text);
    return ok;
}

int main(void)
{
    CHECK("every proxy and throttle row names a field of its C type's size; query rows none",
          every_row_names_a_field_of_its_size());
    CHECK("every row's range, scaled, fits its field", every_range_fits_its_field());

    struct config cfg;
    config_init(&cfg);
    CHECK("proxy defaults land in their fields", defaults_land(SETTING_PROXY, &cfg));
    CHECK("a proxy setting written through the table: its field by name, at its scale, nothing else",
          writes_land_in_their_field(SETTING_PROXY, &cfg));
    config_free(&cfg);

    struct throttle_settings t;
    settings_throttle_defaults(&t);
    CHECK("throttle defaults land in their fields", defaults_land(SETTING_THROTTLE, &t));
    CHECK("a throttle setting written through the table: its field by name, nothing else",
          writes_land_in_their_field(SETTING_THROTTLE, &t));

    CHECK("out of range or a fraction for an integer: refused in the table's words", out_of_range_is_refused());
    CHECK("the config file and flags reach the fields (flags win, s kept as ms)",
          config_file_and_flags_reach_the_fields());
    CHECK("a flag out of range: refused, naming flag, setting, value and range", refused_flag());
    CHECK("a throttle update with one refused key changes nothing", refused_throttle_update_changes_nothing());
    CHECK("the throttle's JSON: every row at its default and type; a saved copy loads and round-trips",
          throttle_json_reads_the_fields());
    return UNIT_RESULT();
}

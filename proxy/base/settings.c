/* The settings table's one validation, and the walk from a row to its
 * field (see settings.h; the rows are in settings_table.c). */
#include "settings.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

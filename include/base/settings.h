/* Every number an operator can set, in one table: name, type, range,
 * default and whether it can change while running. The proxy's flags, its
 * config file and the admin API's throttle endpoint all validate through
 * it, so a value is accepted or refused the same way, with the same words,
 * wherever it comes from. */
#ifndef PGTANDEM_SETTINGS_H
#define PGTANDEM_SETTINGS_H

#include <stddef.h>

struct json_t;

enum setting_type { SETTING_INT, SETTING_NUMBER, SETTING_BOOL };
enum setting_scope {
    SETTING_PROXY,    /* flags and the config file */
    SETTING_THROTTLE, /* the running backfill: admin API, kept with the migration's state */
    SETTING_QUERY     /* an admin API request's ?name=value parameters */
};

struct setting {
    const char *name;       /* config file key, admin API key */
    const char *flag;       /* command-line flag; NULL: none */
    enum setting_type type;
    double min, max, def;
    int reloadable;         /* SIGHUP or the admin API changes it while running */
    enum setting_scope scope;
    const char *unit;       /* for messages and the README: "bytes", "ms", ... */
    const char *help;       /* one line for `pgtandem proxy --help` */
};

/* The table, ended by an entry whose name is NULL. */
extern const struct setting SETTINGS[];

const struct setting *setting_by_name(enum setting_scope scope, const char *name);
const struct setting *setting_by_flag(const char *flag);
/* "a, b, c": the names a scope knows, for "unknown setting" messages. */
void setting_names(enum setting_scope scope, char *out, size_t cap);

/* "integer 0..86400 s, default 30": a setting's range and default as the
 * help shows them. */
void setting_describe(const struct setting *s, char *out, size_t cap);

/* Parse and range-check. Errors read: setting "NAME": VALUE is not an
 * integer from MIN to MAX (UNIT) ("query parameter" for SETTING_QUERY).
 * Booleans as text: true/false, 1/0, yes/no, on/off. */
int setting_from_text(const struct setting *s, const char *text, double *out, char *err, size_t errlen);
int setting_from_json(const struct setting *s, const struct json_t *v, double *out, char *err, size_t errlen);

/* The backfill's live settings. */
struct throttle_settings {
    long max_rows_per_sec;
    long target_ms;
    double sleep_ratio;
    long max_app_p99_ms;
    double app_p99_budget;  /* x the p99 measured without the backfill; 0: off */
    long max_replica_lag_ms;
    int paused;
    long workers;           /* backfill_workers */
};

void settings_throttle_defaults(struct throttle_settings *t);
/* A JSON object of settings; all applied or none (err says which and why). */
int settings_throttle_update(struct throttle_settings *t, const char *json, size_t len, char *err, size_t errlen);
struct json_t *settings_throttle_json(const struct throttle_settings *t);
/* As stored with the migration's state, and back. */
char *settings_throttle_dump(const struct throttle_settings *t);
int settings_throttle_load(struct throttle_settings *t, const char *json, char *err, size_t errlen);

#endif

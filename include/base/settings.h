/* Every number an operator can set, in one table: name, type, range,
 * default, whether it can change while running, and the field it is kept
 * in. The proxy's flags, its config file and the admin API's throttle
 * endpoint all validate through it, so a value is accepted or refused the
 * same way, with the same words, wherever it comes from; defaults, setting,
 * the throttle's JSON and its saved copy all walk the table to the field,
 * so no list of names repeats it.
 *
 * To add a setting: add its field to the scope's struct (struct config in
 * config.h for SETTING_PROXY, struct throttle_settings below for
 * SETTING_THROTTLE), then one row to SETTINGS in settings_table.c ending in
 * CONFIG_FIELD(field, scale) or THROTTLE_FIELD(field, scale); scale is what
 * the stored value is the given one times (1000: given in s, kept in ms).
 * The field's C type is read from its declaration. A SETTING_QUERY row has
 * NO_FIELD: each admin request reads its parameters by name
 * (admin_query_param). test_settings.c then needs the field by name in its
 * reader, and `make docs` rewrites doc/configuration.md. */
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

/* The C type of a setting's field. uint32_t is unsigned int and size_t
 * unsigned long (or unsigned int on a 32-bit ABI), so the basic types name
 * them without two names for one type. */
enum setting_ctype {
    SETTING_C_NONE,   /* no field: SETTING_QUERY */
    SETTING_C_INT,
    SETTING_C_UINT,
    SETTING_C_LONG,
    SETTING_C_ULONG,
    SETTING_C_DOUBLE
};
#define SETTING_CTYPE_OF(x) \
    _Generic((x), int: SETTING_C_INT, unsigned int: SETTING_C_UINT, long: SETTING_C_LONG, \
             unsigned long: SETTING_C_ULONG, double: SETTING_C_DOUBLE)

/* Where a setting is kept: at offset in its scope's struct, as ctype,
 * holding the given value times scale. */
struct setting_field {
    size_t offset;
    enum setting_ctype ctype; /* from the field's declaration: it cannot disagree */
    size_t size;              /* sizeof the field, for the unit test */
    double scale;             /* the field holds the given value times this */
};
#define SETTING_FIELD(type, member, scale) \
    {offsetof(type, member), SETTING_CTYPE_OF(((type *)0)->member), sizeof(((type *)0)->member), (scale)}
#define CONFIG_FIELD(member, scale) SETTING_FIELD(struct config, member, scale)
#define THROTTLE_FIELD(member, scale) SETTING_FIELD(struct throttle_settings, member, scale)
#define NO_FIELD {0, SETTING_C_NONE, 0, 0}

struct setting {
    const char *name;       /* config file key, admin API key */
    const char *flag;       /* command-line flag; NULL: none */
    enum setting_type type;
    double min, max, def;
    int reloadable;         /* SIGHUP or the admin API changes it while running */
    enum setting_scope scope;
    const char *unit;       /* for messages and the README: "bytes", "ms", ... */
    const char *help;       /* one line for `pgtandem proxy --help` */
    struct setting_field field;
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

/* A checked value (as given, before its scale) into its field in `base`,
 * the scope's struct; and back out as given. No-ops for NO_FIELD. */
void setting_store(const struct setting *s, void *base, double value);
double setting_load(const struct setting *s, const void *base);
/* Every row of a scope's struct at its default. */
void settings_defaults(enum setting_scope scope, void *base);
/* sizeof a ctype (0 for SETTING_C_NONE). */
size_t setting_ctype_size(enum setting_ctype ctype);

/* The backfill's live settings. */
struct throttle_settings {
    long max_rows_per_sec;
    long target_ms;
    double sleep_ratio;
    long max_app_p99_ms;
    double app_p99_budget;  /* x the p99 measured without the backfill; 0: off */
    long app_p99_floor_ms;  /* a p99 under this is within any ratio's budget */
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

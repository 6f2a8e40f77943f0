/* Unit tests for the option tables behind flags, the config file and
 * `pgtandem proxy --help`: every entry complete and unique, the config
 * file's key list and the help built from them, the words of a refused
 * choice; and the psql-script check `migrate lint DIR` skips files by. */
#include <stdlib.h>

#include "config.h"
#include "settings.h"
#include "sql_script.h"
#include "unit.h"

static int option_entries_are_complete(void)
{
    for (const struct config_option *o = config_options(); o->flag; o++) {
        if (strncmp(o->flag, "--", 2) != 0 || !o->value || !o->def || !o->help || !o->help[0] ||
            (!o->set && !o->field)) {
            printf("incomplete: %s\n", o->flag);
            return 0;
        }
        for (const struct config_option *p = config_options(); p < o; p++)
            if (!strcmp(p->flag, o->flag) || (p->key && o->key && !strcmp(p->key, o->key))) {
                printf("twice: %s\n", o->flag);
                return 0;
            }
        if (setting_by_flag(o->flag) || (o->key && setting_by_name(SETTING_PROXY, o->key))) {
            printf("also a number: %s\n", o->flag);
            return 0;
        }
    }
    return 1;
}

static int proxy_settings_have_help(void)
{
    for (const struct setting *s = SETTINGS; s->name; s++)
        if (!s->help || !s->help[0]) {
            printf("no help: %s\n", s->name);
            return 0;
        }
    return 1;
}

static int known_keys_name_every_key(void)
{
    char known[4096];
    config_known_keys(known, sizeof known);
    char padded[4200];
    snprintf(padded, sizeof padded, ", %s,", known);
    for (const struct config_option *o = config_options(); o->flag; o++) {
        char item[80];
        snprintf(item, sizeof item, ", %s,", o->key ? o->key : "");
        if (o->key && !strstr(padded, item)) {
            printf("missing %s in %s\n", o->key, known);
            return 0;
        }
    }
    for (const struct setting *s = SETTINGS; s->name; s++) {
        char item[80];
        snprintf(item, sizeof item, ", %s,", s->name);
        if (s->scope == SETTING_PROXY && !strstr(padded, item)) {
            printf("missing %s in %s\n", s->name, known);
            return 0;
        }
    }
    return strstr(padded, ", fleet_id,") != NULL;
}

static int help_shows_flag_default_and_key(void)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    config_print_help(out);
    fclose(out);
    int ok = text != NULL;
    for (const struct setting *s = SETTINGS; ok && s->name; s++) {
        if (s->scope != SETTING_PROXY || !s->flag)
            continue;
        char key[96], desc[256];
        snprintf(key, sizeof key, "config key: %s\n", s->name);
        setting_describe(s, desc, sizeof desc);
        const char *at = strstr(text, s->flag);
        ok = at && strstr(at, desc) && strstr(at, key);
        if (!ok)
            printf("not shown: %s\n", s->flag);
    }
    for (const struct config_option *o = config_options(); ok && o->flag; o++) {
        const char *at = strstr(text, o->flag);
        ok = at && strstr(at, o->def) && strstr(at, o->key ? o->key : "(none)");
        if (!ok)
            printf("not shown: %s\n", o->flag);
    }
    free(text);
    return ok;
}

static int refused(char **argv, int argc, const char *want)
{
    struct config cfg;
    config_init(&cfg);
    char err[512] = "";
    int rc = config_from_args(&cfg, argc, argv, err, sizeof err);
    config_free(&cfg);
    if (rc == 0 || !strstr(err, want)) {
        printf("rc=%d err=%s\n", rc, err);
        return 0;
    }
    return 1;
}

int main(void)
{
    CHECK("every option has a flag, a value, a default and help, once", option_entries_are_complete());
    CHECK("every numeric setting has help", proxy_settings_have_help());
    CHECK("the config file's key list names every key (fleet_id too)", known_keys_name_every_key());
    CHECK("the help shows each flag with its range or choices, default and key", help_shows_flag_default_and_key());

    char desc[128];
    setting_describe(setting_by_name(SETTING_PROXY, "shutdown_timeout_s"), desc, sizeof desc);
    CHECK("a setting's description: type, range, unit, default", !strcmp(desc, "integer from 0 to 86400 s, default 30"));
    setting_describe(setting_by_name(SETTING_THROTTLE, "paused"), desc, sizeof desc);
    CHECK("a boolean's description", !strcmp(desc, "true or false, default false"));

    char *pool[] = {"proxy", "--pool-mode", "sessions", "--upstream", "postgresql://127.0.0.1:1/"};
    CHECK("a refused choice names the flag and the choices",
          refused(pool, 5, "--pool-mode: 'sessions' is not session or transaction"));
    char *level[] = {"proxy", "--log-level", "loud", "--upstream", "postgresql://127.0.0.1:1/"};
    CHECK("four choices read a, b, c or d", refused(level, 5, "'loud' is not error, warn, info or debug"));
    char *admin[] = {"proxy", "--admin", "nowhere", "--upstream", "postgresql://127.0.0.1:1/"};
    CHECK("--admin says what it takes", refused(admin, 5, "port 0 for any free port, or off"));
    char *unknown[] = {"proxy", "--listenn", "x"};
    CHECK("an unknown flag points at the help", refused(unknown, 3, "pgtandem proxy --help"));

    struct config cfg;
    config_init(&cfg);
    char err[512];
    char *ok[] = {"proxy", "--admin", "off", "--log-level", "DEBUG", "--fleet-id", "p1", "--upstream",
                  "postgresql://127.0.0.1:1/"};
    int rc = config_from_args(&cfg, 9, ok, err, sizeof err);
    CHECK("flags through the table set the config",
          rc == 0 && cfg.admin_off && cfg.log_level == LOG_LEVEL_DEBUG && cfg.fleet_id && !strcmp(cfg.fleet_id, "p1"));
    config_free(&cfg);

    static const char psql[] = "-- seed\n\\set rows 10\nCREATE TABLE t (id int);\n";
    static const char later[] = "CREATE TABLE t (id int);\n  \\if :x\nSELECT 1;\n\\endif\n";
    static const char body[] = "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $$\n\\x$$;\n";
    static const char broken[] = "CREATE TABLE t (id int);\nALTER TABLEE t ADD x int;\n";
    static const char mid_line[] = "SELECT 1 \\gset\n";
    CHECK("a meta-command where the parser stops: its line", sql_script_psql_line(psql, strlen(psql)) == 2);
    CHECK("an indented meta-command after SQL", sql_script_psql_line(later, strlen(later)) == 2);
    CHECK("a backslash inside a function body is SQL", sql_script_psql_line(body, strlen(body)) == 0);
    CHECK("a syntax error is no psql script", sql_script_psql_line(broken, strlen(broken)) == 0);
    CHECK("a backslash mid-line is no meta-command line", sql_script_psql_line(mid_line, strlen(mid_line)) == 0);
    return UNIT_RESULT();
}

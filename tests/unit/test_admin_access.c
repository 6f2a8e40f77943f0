/* Unit tests of the admin API's access rules that need no server: which
 * listen addresses count as loopback (no token needed), and the settings
 * table's words for query parameters (numbers and booleans). */
#include "admin.h"
#include "config.h"
#include "settings.h"
#include "unit.h"

static void loopback_addresses(void)
{
    CHECK("127.0.0.1", config_host_is_loopback("127.0.0.1"));
    CHECK("127.0.0.2", config_host_is_loopback("127.0.0.2"));
    CHECK("::1", config_host_is_loopback("::1"));
    CHECK("v4-mapped loopback", config_host_is_loopback("::ffff:127.0.0.1"));
    CHECK("localhost", config_host_is_loopback("localhost") && config_host_is_loopback("LOCALHOST"));
    CHECK("0.0.0.0 is not", !config_host_is_loopback("0.0.0.0"));
    CHECK(":: is not", !config_host_is_loopback("::"));
    CHECK("empty is not", !config_host_is_loopback(""));
    CHECK("a LAN address is not", !config_host_is_loopback("10.0.0.5"));
    CHECK("a name that starts like one is not", !config_host_is_loopback("127.0.0.1.nip.io"));
    CHECK("short forms are not", !config_host_is_loopback("127.1"));
}

static int query(const char *name, const char *text, double *v, char *err, size_t errlen)
{
    return setting_from_text(setting_by_name(SETTING_QUERY, name), text, v, err, errlen);
}

static void query_parameters(void)
{
    char err[256];
    double v = 0;
    CHECK("timeout_ms 1500", query("timeout_ms", "1500", &v, err, sizeof err) == 0 && v == 1500);
    CHECK("timeout_ms 1e300", query("timeout_ms", "1e300", &v, err, sizeof err) != 0 &&
          !strcmp(err, "query parameter \"timeout_ms\": '1e300' is not an integer from 1 to 600000 (ms)"));
    CHECK("timeout_ms 1500abc", query("timeout_ms", "1500abc", &v, err, sizeof err) != 0);
    CHECK("timeout_ms empty", query("timeout_ms", "", &v, err, sizeof err) != 0);
    CHECK("default", setting_by_name(SETTING_QUERY, "lock_timeout_ms")->def == 200);
    const char *yes[] = {"true", "1", "yes", "on", "TRUE", "On"}, *no[] = {"false", "0", "no", "off", "False", "OFF"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        CHECK("force yes", query("force", yes[i], &v, err, sizeof err) == 0 && v == 1);
        CHECK("force no", query("force", no[i], &v, err, sizeof err) == 0 && v == 0);
    }
    CHECK("force maybe", query("force", "maybe", &v, err, sizeof err) != 0 && strstr(err, "\"force\"") &&
          strstr(err, "true or false"));
    CHECK("force 2", query("force", "2", &v, err, sizeof err) != 0);
    CHECK("not a proxy setting", setting_by_name(SETTING_PROXY, "timeout_ms") == NULL);
}

int main(void)
{
    loopback_addresses();
    query_parameters();
    return UNIT_RESULT();
}

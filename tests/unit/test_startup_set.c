/* Unit tests for the startup parameter sets sessions share (startup_set.c):
 * the same packet is one set, a different packet or a different "@NAME"
 * another; what is derived from a set (the declared release, the pool's
 * key); tracked values shared until a session changes one (then copied);
 * credentials shared only when the same; every set gone with its last
 * reference. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "pin.h"
#include "relay.h"
#include "startup_set.h"
#include "unit.h"

/* A StartupMessage of the given "key\0value\0" pairs (ending "\0"). */
static uint8_t *packet(const char *pairs, size_t len, uint32_t *out_len)
{
    uint32_t n = (uint32_t)(8 + len + 1);
    uint8_t *p = calloc(1, n);
    p[0] = (uint8_t)(n >> 24);
    p[1] = (uint8_t)(n >> 16);
    p[2] = (uint8_t)(n >> 8);
    p[3] = (uint8_t)n;
    p[5] = 3; /* protocol 3.0 */
    memcpy(p + 8, pairs, len);
    *out_len = n;
    return p;
}

/* A set for the pairs, as the session makes it (database "NAME@VER" split). */
static struct startup_set *get(struct relay *relay, const char *pairs, size_t len)
{
    uint32_t n;
    uint8_t *p = packet(pairs, len, &n);
    struct startup_packet sp;
    struct startup_refusal why;
    if (proto_parse_startup(p, n, &sp, &why) != 0) {
        free(p);
        return NULL;
    }
    char *version = proto_startup_split_param(p, &n, &sp, "database", '@');
    struct startup_set *ss = startup_set_get(relay, p, n, &sp, version);
    free(p); /* the set keeps a copy */
    return ss;
}

static int sets_in(const struct relay *relay)
{
    int n = 0;
    for (int i = 0; i < RELAY_STARTUP_BUCKETS; i++)
        for (const struct startup_set *ss = relay->startup_sets[i]; ss; ss = ss->next)
            n++;
    return n;
}

#define PAIRS(s) s, sizeof s - 1

static void test_sharing(struct relay *relay)
{
    struct startup_set *a = get(relay, PAIRS("user\0app\0database\0appdb\0application_name\0web\0"));
    struct startup_set *b = get(relay, PAIRS("user\0app\0database\0appdb\0application_name\0web\0"));
    struct startup_set *c = get(relay, PAIRS("user\0app\0database\0appdb\0application_name\0worker\0"));
    struct startup_set *d = get(relay, PAIRS("user\0app\0database\0appdb@v2\0application_name\0web\0"));
    CHECK("share: the same packet is one set", a && a == b && a->refs == 2);
    CHECK("share: another parameter value is another set", c && c != a);
    CHECK("share: the same bytes with another @NAME are another set", d && d != a && d->database_version &&
                                                                          !strcmp(d->database_version, "v2"));
    CHECK("share: its parameters read from its own copy", !strcmp(startup_param(&a->sp, "application_name"), "web") &&
                                                               !strcmp(startup_param(&d->sp, "database"), "appdb"));
    CHECK("derive: @NAME declares the release", d->version && !strcmp(d->version, "v2") && !a->version);
    CHECK("derive: the pool's key leaves out user, database and tracked parameters",
          a->pool_options && !strcmp(a->pool_options, ""));
    startup_set_put(relay, b);
    CHECK("put: a set lives while a session holds it", sets_in(relay) == 3 && a->refs == 1);
    startup_set_put(relay, a);
    startup_set_put(relay, c);
    startup_set_put(relay, d);
    CHECK("put: the last reference frees the set", sets_in(relay) == 0);
}

static void test_derived(struct relay *relay)
{
    struct startup_set *o = get(relay, PAIRS("user\0app\0options\0-c pgtandem.version=v3 -c work_mem=8MB\0"
                                           "search_path\0a b\0"));
    CHECK("derive: the options name the release", o && o->version && !strcmp(o->version, "v3"));
    CHECK("derive: the pool's key keeps the other options and untracked parameters, escaped",
          o && !strcmp(o->pool_options, " -c work_mem=8MB -c search_path=a\\ b"));
    struct startup_set *n = get(relay, PAIRS("user\0app\0application_name\0svc@v4\0"));
    CHECK("derive: application_name's @NAME names the release", n && n->version && !strcmp(n->version, "v4"));
    startup_set_put(relay, o);
    startup_set_put(relay, n);
}

static void test_params(struct relay *relay)
{
    struct startup_set *a = get(relay, PAIRS("user\0app\0application_name\0web\0"));
    struct param_values welcome;
    memset(&welcome, 0, sizeof welcome);
    int app = pin_tracked_index("application_name");
    strcpy(welcome.value[app], "");
    welcome.known[app] = 1;
    struct shared_params *p1 = startup_set_params(a, &welcome);
    struct shared_params *p2 = startup_set_params(a, &welcome);
    CHECK("params: the set's own value over the pool's", p1 && !strcmp(p1->v.value[app], "web"));
    CHECK("params: two sessions of a set share them", p1 == p2 && p1->refs == 3);
    struct shared_params *mine = p2;
    CHECK("params: a session that changes one gets its own copy",
          shared_params_own(&mine) == 0 && mine != p1 && p1->refs == 2 && mine->refs == 1);
    strcpy(mine->v.value[app], "changed");
    CHECK("params: the others keep theirs", !strcmp(p1->v.value[app], "web"));
    struct shared_params *again = mine;
    CHECK("params: its own copy is not copied again", shared_params_own(&again) == 0 && again == mine);
    strcpy(welcome.value[app], "other");
    welcome.known[pin_tracked_index("TimeZone")] = 1;
    struct shared_params *p3 = startup_set_params(a, &welcome);
    CHECK("params: another pool's welcome is another copy", p3 && p3 != p1 && p1->refs == 1);
    shared_params_put(p1);
    shared_params_put(mine);
    shared_params_put(p3);
    startup_set_put(relay, a);
    CHECK("params: all freed with the set", sets_in(relay) == 0);
}

static struct auth_credentials creds_of(const char *password, unsigned char key_byte)
{
    struct auth_credentials c;
    memset(&c, 0, sizeof c);
    if (password) {
        c.password = strdup(password);
        c.password_len = strlen(password);
    }
    memset(c.client_key, key_byte, sizeof c.client_key);
    c.verifier.iterations = 4096;
    c.verifier.salt_len = 16;
    return c;
}

static void test_creds(struct relay *relay)
{
    struct startup_set *a = get(relay, PAIRS("user\0app\0"));
    struct auth_credentials c1 = creds_of(NULL, 1), c2 = creds_of(NULL, 1), c3 = creds_of(NULL, 2);
    struct shared_creds *s1 = startup_set_creds(a, &c1);
    struct shared_creds *s2 = startup_set_creds(a, &c2);
    CHECK("creds: the same proof is shared", s1 && s1 == s2 && s1->refs == 3);
    struct shared_creds *s3 = startup_set_creds(a, &c3);
    CHECK("creds: another is its own", s3 && s3 != s1 && s1->refs == 2 && s3->refs == 2);
    struct auth_credentials p1 = creds_of("secret", 0), p2 = creds_of("secreT", 0);
    struct shared_creds *t1 = startup_set_creds(a, &p1);
    struct shared_creds *t2 = startup_set_creds(a, &p2);
    CHECK("creds: a password is compared whole", t1 && t2 && t1 != t2 && !strcmp(t1->c.password, "secret"));
    CHECK("creds: the caller's copy is wiped", !p1.password && !p2.password && !c2.password);
    shared_creds_put(s1);
    shared_creds_put(s2);
    shared_creds_put(s3);
    shared_creds_put(t1);
    shared_creds_put(t2);
    startup_set_put(relay, a);
    CHECK("creds: all freed with the set", sets_in(relay) == 0);
}

/* What Postgres gets of the options through the proxy: every option but
 * the version's, its -c with it, escapes kept. */
static void test_options_upstream(void)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"-c pgtandem.version=v2", ""},
        {"--pgtandem.version=v2", ""},
        {"-c statement_timeout=5s -c pgtandem.version=v2 -c work_mem=64MB",
         "-c statement_timeout=5s -c work_mem=64MB"},
        {"  -c pgtandem.version=v2   -c search_path=a\\ b  ", "-c search_path=a\\ b"},
        {"-c application_name=x\\ pgtandem.version=y", "-c application_name=x\\ pgtandem.version=y"}, /* a value */
        {"-cpgtandem.version=v2 -c geqo=off", "-c geqo=off"},
        {"-c geqo=off", "-c geqo=off"},
        {"-c", "-c"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = startup_options_upstream(cases[i].in);
        char name[200];
        snprintf(name, sizeof name, "options upstream: [%s] -> [%s]", cases[i].in, cases[i].want);
        CHECK(name, got && !strcmp(got, cases[i].want));
        free(got);
    }
}

int main(void)
{
    test_options_upstream();
    struct relay *relay = calloc(1, sizeof *relay);
    config_init(&relay->cfg);
    relay->cfg.pool_transaction = 1;
    test_sharing(relay);
    test_derived(relay);
    test_params(relay);
    test_creds(relay);
    config_free(&relay->cfg);
    free(relay);
    return UNIT_RESULT();
}

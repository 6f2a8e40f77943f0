/* Startup parameter sets shared by the sessions that sent them (see
 * startup_set.h): a hash table on the server, and the values derived from a
 * set once, when it is made. */
#include "startup_set.h"

#include <assert.h>
#include <event2/buffer.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pin.h"

static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t hash_of(const uint8_t *packet, uint32_t len, const char *database_version)
{
    uint64_t h = fnv1a(0xcbf29ce484222325ull, packet, len);
    return database_version ? fnv1a(h, database_version, strlen(database_version) + 1) : h;
}

static const char *skip_spaces(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* Finds "pgtandem.version=NAME" in a startup options string, written as
 * "-c pgtandem.version=NAME" or "--pgtandem.version=NAME". */
static char *version_from_options(const char *opts)
{
    static const char key[] = "pgtandem.version=";
    for (const char *p = opts; (p = strstr(p, key)); p += sizeof key - 1) {
        const char *v = p + sizeof key - 1;
        size_t n = strcspn(v, " \t");
        if (n)
            return strndup(v, n);
    }
    return NULL;
}

char *startup_declared_version(const struct startup_packet *sp)
{
    const char *opts = startup_param(sp, "options");
    char *v = opts ? version_from_options(skip_spaces(opts)) : NULL;
    if (v)
        return v;
    const char *app = startup_param(sp, "application_name");
    const char *at = app ? strrchr(app, '@') : NULL;
    return at && at[1] ? strdup(at + 1) : NULL;
}

/* One whitespace-separated word of an options string (a backslash keeps
 * the character after it in the word, as Postgres reads options). */
static const char *next_word(const char *p, size_t *len)
{
    p = skip_spaces(p);
    const char *start = p;
    while (*p && *p != ' ' && *p != '\t') {
        if (*p == '\\' && p[1])
            p++;
        p++;
    }
    *len = (size_t)(p - start);
    return start;
}

static void add_word(char **o, const char *out, const char *w, size_t len)
{
    if (*o != out)
        *(*o)++ = ' ';
    memcpy(*o, w, len);
    *o += len;
}

/* The word sets pgtandem.version: "pgtandem.version=" after a -c, or
 * "--pgtandem.version=", or "-cpgtandem.version=". */
static int sets_version(const char *w, size_t len)
{
    static const char key[] = "pgtandem.version=";
    const size_t k = sizeof key - 1;
    return (len >= k && !strncmp(w, key, k)) ||
           (len >= k + 2 && (!strncmp(w, "--", 2) || !strncmp(w, "-c", 2)) && !strncmp(w + 2, key, k));
}

char *startup_options_upstream(const char *opts)
{
    char *out = malloc(strlen(opts) + 1), *o = out;
    if (!out)
        return NULL;
    const char *dash_c = NULL; /* a "-c" whose setting is the next word */
    size_t len;
    for (const char *w = next_word(opts, &len); len; w = next_word(w + len, &len)) {
        if (len == 2 && !strncmp(w, "-c", 2)) {
            if (dash_c)
                add_word(&o, out, dash_c, 2);
            dash_c = w;
            continue;
        }
        if (sets_version(w, len)) { /* the version, with its -c */
            dash_c = NULL;
            continue;
        }
        if (dash_c)
            add_word(&o, out, dash_c, 2);
        dash_c = NULL;
        add_word(&o, out, w, len);
    }
    if (dash_c)
        add_word(&o, out, dash_c, 2);
    *o = '\0';
    return out;
}

/* The options first (what a client says explicitly), then the database's
 * "@NAME", then application_name's. -1 out of memory. */
static int declare_version(struct startup_set *ss)
{
    const char *opts = startup_param(&ss->sp, "options");
    ss->version = opts ? version_from_options(skip_spaces(opts)) : NULL;
    if (!ss->version && ss->database_version && !(ss->version = strdup(ss->database_version)))
        return -1;
    if (!ss->version)
        ss->version = startup_declared_version(&ss->sp);
    /* a NULL from strndup/strdup reads as no version: only a declared one counts */
    return 0;
}

/* Appends " -c key=value" with the value escaped as Postgres reads options
 * (a backslash before spaces and backslashes). */
static void add_option(struct evbuffer *out, const char *key, const char *value)
{
    evbuffer_add_printf(out, " -c %s=", key);
    for (const char *v = value; *v; v++) {
        if (*v == ' ' || *v == '\\')
            evbuffer_add(out, "\\", 1);
        evbuffer_add(out, v, 1);
    }
}

/* What a pool is keyed by besides database and user: the client's options
 * (without pgtandem.version, which picks the schema instead) and its
 * startup parameters, as -c options, so a server is only ever lent to
 * clients that asked for the same settings, and RESET, RESET ALL and
 * DISCARD ALL on it go back to the client's own startup values, spelt as
 * Postgres reports them, as they would direct. application_name alone is
 * carried by SET instead (clients name themselves one by one: a pool
 * each would be no pool). */
static char *pool_options_of(const struct startup_packet *sp)
{
    struct evbuffer *out = evbuffer_new();
    if (!out)
        return NULL;
    const char *value;
    for (const char *k = startup_next_param(sp, NULL, &value); k; k = startup_next_param(sp, k, &value)) {
        if (!strcmp(k, "options")) {
            char *rest = startup_options_upstream(value); /* every option but the version's */
            if (!rest) {
                evbuffer_free(out);
                return NULL;
            }
            if (*rest)
                evbuffer_add_printf(out, " %s", rest);
            free(rest);
        } else if (strcmp(k, "user") && strcmp(k, "database") && strcasecmp(k, "application_name")) {
            add_option(out, k, value);
        }
    }
    size_t n = evbuffer_get_length(out);
    char *text = malloc(n + 1);
    if (text) {
        evbuffer_remove(out, text, n);
        text[n] = '\0';
    }
    evbuffer_free(out);
    return text;
}

static struct startup_set **bucket(struct relay *relay, uint64_t hash)
{
    return &relay->startup_sets[hash % RELAY_STARTUP_BUCKETS];
}

static void free_set(struct startup_set *ss)
{
    free(ss->database_version);
    free(ss->version);
    free(ss->pool_options);
    if (ss->params)
        shared_params_put(ss->params);
    if (ss->creds)
        shared_creds_put(ss->creds);
    free(ss);
}

/* Both absent, or the same text. */
static int same_version(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

struct startup_set *startup_set_get(struct relay *relay, const uint8_t *packet, uint32_t len,
                                    const struct startup_packet *sp, char *database_version)
{
    assert(relay && packet && sp);
    uint64_t hash = hash_of(packet, len, database_version);
    for (struct startup_set *ss = *bucket(relay, hash); ss; ss = ss->next) {
        if (ss->hash == hash && ss->len == len && !memcmp(ss->packet, packet, len) &&
            same_version(ss->database_version, database_version)) {
            ss->refs++;
            free(database_version);
            return ss;
        }
    }
    struct startup_set *ss = calloc(1, sizeof *ss + len);
    if (!ss) {
        free(database_version);
        return NULL;
    }
    ss->hash = hash;
    ss->refs = 1;
    ss->len = len;
    memcpy(ss->packet, packet, len);
    ss->sp = *sp;
    ss->sp.params = (const char *)ss->packet + (sp->params - (const char *)packet);
    ss->database_version = database_version;
    if (declare_version(ss) != 0 || (relay->cfg.pool_transaction && !(ss->pool_options = pool_options_of(&ss->sp)))) {
        free_set(ss);
        return NULL;
    }
    ss->next = *bucket(relay, hash);
    *bucket(relay, hash) = ss;
    return ss;
}

void startup_set_put(struct relay *relay, struct startup_set *ss)
{
    if (!ss || --ss->refs)
        return;
    for (struct startup_set **p = bucket(relay, ss->hash); *p; p = &(*p)->next)
        if (*p == ss) {
            *p = ss->next;
            break;
        }
    free_set(ss);
}

/* ---- the tracked values and credentials its sessions start from ---- */

struct shared_params *startup_set_params(struct startup_set *ss, const struct param_values *welcome)
{
    struct param_values v = *welcome;
    const char *value;
    /* the others were the pool's login's own startup values (pool_options_of) */
    for (const char *k = startup_next_param(&ss->sp, NULL, &value); k; k = startup_next_param(&ss->sp, k, &value)) {
        int i = strcasecmp(k, "application_name") ? -1 : pin_tracked_index(k);
        if (i >= 0 && strlen(value) < sizeof v.value[i]) {
            strcpy(v.value[i], value);
            v.known[i] = 1;
        }
    }
    if (ss->params && !memcmp(&ss->params->v, &v, sizeof v)) {
        ss->params->refs++;
        return ss->params;
    }
    struct shared_params *p = malloc(sizeof *p);
    if (!p)
        return NULL;
    p->refs = 2; /* the caller's and the set's */
    p->v = v;
    if (ss->params)
        shared_params_put(ss->params);
    ss->params = p;
    return p;
}

int shared_params_own(struct shared_params **pp)
{
    if ((*pp)->refs == 1)
        return 0;
    struct shared_params *p = malloc(sizeof *p);
    if (!p)
        return -1;
    p->refs = 1;
    p->v = (*pp)->v;
    shared_params_put(*pp);
    *pp = p;
    return 0;
}

void shared_params_put(struct shared_params *p)
{
    if (p && !--p->refs)
        free(p);
}

static int same_verifier(const struct scram_verifier *a, const struct scram_verifier *b)
{
    return a->iterations == b->iterations && a->salt_len == b->salt_len && a->salt_len <= sizeof a->salt &&
           !memcmp(a->salt, b->salt, a->salt_len) && !memcmp(a->stored_key, b->stored_key, sizeof a->stored_key) &&
           !memcmp(a->server_key, b->server_key, sizeof a->server_key);
}

static int same_creds(const struct auth_credentials *a, const struct auth_credentials *b)
{
    if (!a->password != !b->password || !same_verifier(&a->verifier, &b->verifier))
        return 0;
    if (a->password)
        return a->password_len == b->password_len && !CRYPTO_memcmp(a->password, b->password, a->password_len);
    return !CRYPTO_memcmp(a->client_key, b->client_key, sizeof a->client_key);
}

struct shared_creds *startup_set_creds(struct startup_set *ss, struct auth_credentials *c)
{
    if (ss->creds && same_creds(&ss->creds->c, c)) {
        auth_credentials_wipe(c);
        ss->creds->refs++;
        return ss->creds;
    }
    struct shared_creds *s = malloc(sizeof *s);
    if (!s) {
        auth_credentials_wipe(c);
        return NULL;
    }
    s->refs = 2; /* the caller's and the set's */
    s->c = *c;
    OPENSSL_cleanse(c, sizeof *c); /* the password, if any, is s's now */
    if (ss->creds)
        shared_creds_put(ss->creds);
    ss->creds = s;
    return s;
}

void shared_creds_put(struct shared_creds *c)
{
    if (!c || --c->refs)
        return;
    auth_credentials_wipe(&c->c);
    free(c);
}

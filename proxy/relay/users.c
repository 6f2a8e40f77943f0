/* Loads config/users.json for auth "scram": user name -> SCRAM verifier
 * (and optionally the plain password for logging in upstream). Refuses a
 * file that the group or others can access, like libpq does for .pgpass. */
#include "users.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file_read.h"

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* Reads the whole file after checking its mode on the open descriptor (no
 * window between the check and the read). The caller wipes and frees *buf. */
static int read_private_file(const char *path, char **buf, size_t *len, char *err, size_t errlen)
{
    *buf = file_read_all(path, "users file", USERS_FILE_MAX, FILE_PRIVATE, len, err, errlen);
    return *buf ? 0 : -1;
}

static void entry_clear(struct user_entry *e)
{
    free(e->name);
    if (e->password) {
        OPENSSL_cleanse(e->password, e->password_len);
        free(e->password);
    }
    OPENSSL_cleanse(e, sizeof *e);
}

static int take_verifier(const char *path, const char *user, const char *text, struct user_entry *e, char *err,
                         size_t errlen)
{
    if (scram_verifier_parse(&e->verifier, text, strlen(text)) != SCRAM_OK)
        return fail(err, errlen,
                    "users file \"%s\": user \"%s\": not a SCRAM-SHA-256 verifier; expected "
                    "\"SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>\" (as in pg_authid, or made by "
                    "`pgtandem passwd`) or {\"password\": \"...\"}",
                    path, user);
    return 0;
}

/* {"password": "..."} and/or {"verifier": "..."}; with both, they must agree. */
static int take_object(const char *path, const char *user, json_t *obj, struct user_entry *e, char *err,
                       size_t errlen)
{
    const char *key;
    json_t *val;
    json_t *pw = json_object_get(obj, "password"), *ver = json_object_get(obj, "verifier");
    json_object_foreach(obj, key, val) {
        if (strcmp(key, "password") != 0 && strcmp(key, "verifier") != 0)
            return fail(err, errlen, "users file \"%s\": user \"%s\": unknown field \"%s\" (expected \"password\" "
                        "or \"verifier\")", path, user, key);
        if (!json_is_string(val))
            return fail(err, errlen, "users file \"%s\": user \"%s\": \"%s\" must be a string", path, user, key);
    }
    if (!pw && !ver)
        return fail(err, errlen, "users file \"%s\": user \"%s\": needs \"password\" or \"verifier\"", path, user);
    if (ver && take_verifier(path, user, json_string_value(ver), e, err, errlen) != 0)
        return -1;
    if (!pw)
        return 0;
    size_t len = json_string_length(pw);
    if (len == 0)
        return fail(err, errlen, "users file \"%s\": user \"%s\": empty password", path, user);
    e->password = malloc(len + 1);
    if (!e->password)
        return fail(err, errlen, "users file \"%s\": out of memory", path);
    memcpy(e->password, json_string_value(pw), len + 1);
    e->password_len = len;
    if (ver)
        return scram_verifier_check_password(&e->verifier, e->password, len)
                   ? 0
                   : fail(err, errlen, "users file \"%s\": user \"%s\": password does not match verifier", path, user);
    /* Clients authenticate against a verifier; derive one for this run. */
    if (scram_verifier_from_password(&e->verifier, e->password, len, 0) != SCRAM_OK)
        return fail(err, errlen, "users file \"%s\": could not derive a verifier for \"%s\"", path, user);
    return 0;
}

static int take_entry(const char *path, const char *user, json_t *val, struct user_entry *e, char *err,
                      size_t errlen)
{
    if (user[0] == '\0')
        return fail(err, errlen, "users file \"%s\": empty user name", path);
    e->name = strdup(user);
    if (!e->name)
        return fail(err, errlen, "users file \"%s\": out of memory", path);
    if (json_is_string(val))
        return take_verifier(path, user, json_string_value(val), e, err, errlen);
    if (json_is_object(val))
        return take_object(path, user, val, e, err, errlen);
    return fail(err, errlen, "users file \"%s\": user \"%s\": expected a verifier string or an object", path, user);
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const struct user_entry *)a)->name, ((const struct user_entry *)b)->name);
}

static int build_table(const char *path, json_t *root, struct users *u, char *err, size_t errlen)
{
    const char *user;
    json_t *val;
    if (!json_is_object(root))
        return fail(err, errlen, "users file \"%s\": expected a JSON object {\"user\": verifier, ...}", path);
    u->entries = calloc(json_object_size(root) + 1, sizeof *u->entries);
    if (!u->entries)
        return fail(err, errlen, "users file \"%s\": out of memory", path);
    json_object_foreach(root, user, val) {
        if (take_entry(path, user, val, &u->entries[u->count], err, errlen) != 0) {
            entry_clear(&u->entries[u->count]);
            return -1;
        }
        u->count++;
    }
    qsort(u->entries, u->count, sizeof *u->entries, cmp_entry);
    return 0;
}

/* One "quoted" word of PgBouncer's userlist.txt ("" inside is a quote). */
static const char *userlist_word(const char *p, const char *end, char *out, size_t cap, int *ok)
{
    size_t n = 0;
    *ok = 0;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    if (p >= end || *p != '"')
        return p;
    for (p++; p < end; p++) {
        if (*p == '"' && (p + 1 >= end || p[1] != '"')) {
            out[n] = '\0';
            *ok = 1;
            return p + 1;
        }
        if (*p == '"')
            p++;
        if (n + 1 >= cap)
            return p;
        out[n++] = *p;
    }
    return p;
}

/* PgBouncer's auth_file ("user" "secret" per line, other lines ignored as
 * PgBouncer ignores them) as the object build_table reads: a SCRAM secret
 * as a verifier, anything else as a password, an md5 secret refused. */
static json_t *userlist_to_json(const char *path, const char *buf, size_t len, char *err, size_t errlen)
{
    json_t *root = json_object();
    const char *p = buf, *end = buf + len;
    int line = 0;
    while (root && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        char user[256], secret[1024];
        int ok_user, ok_secret;
        line++;
        const char *q = userlist_word(p, eol, user, sizeof user, &ok_user);
        p = nl ? nl + 1 : end;
        if (!ok_user)
            continue;
        userlist_word(q, eol, secret, sizeof secret, &ok_secret);
        const char *why = !ok_secret ? "expected \"user\" \"secret\""
                          : json_object_get(root, user) ? "the user is listed twice"
                          : !secret[0] ? "an empty secret (PgBouncer's auth_type trust): the proxy authenticates "
                                         "every client"
                          : (strncmp(secret, "md5", 3) == 0 && strlen(secret) == 35)
                              ? "an md5 secret: the proxy authenticates with SCRAM-SHA-256; give the role's SCRAM "
                                "verifier (SELECT rolpassword FROM pg_authid) or its password"
                              : NULL;
        if (why) {
            fail(err, errlen, "users file \"%s\", line %d, user \"%s\": %s", path, line, user, why);
            OPENSSL_cleanse(secret, sizeof secret);
            json_decref(root);
            return NULL;
        }
        json_t *v = strncmp(secret, "SCRAM-SHA-256$", 14) == 0 ? json_string(secret)
                                                               : json_pack("{s:s}", "password", secret);
        OPENSSL_cleanse(secret, sizeof secret);
        if (!v || json_object_set_new(root, user, v) != 0) {
            json_decref(root);
            root = NULL;
        }
    }
    if (!root)
        fail(err, errlen, "users file \"%s\": out of memory", path);
    return root;
}

int users_load(const char *path, struct users **out, char *err, size_t errlen)
{
    char *buf = NULL;
    size_t len = 0;
    json_error_t jerr;
    if (read_private_file(path, &buf, &len, err, errlen) != 0)
        return -1;
    size_t lead = buf ? strspn(buf, " \t\r\n") : 0;
    /* PgBouncer's userlist.txt starts with a quoted name (or a comment);
     * anything else is read as JSON and refused as such */
    int userlist = buf && lead < len && (buf[lead] == '"' || buf[lead] == ';' || buf[lead] == '#');
    json_t *root = userlist ? userlist_to_json(path, buf, len, err, errlen)
                            : json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    OPENSSL_cleanse(buf, len);
    free(buf);
    if (!root && userlist)
        return -1;
    if (!root)
        return fail(err, errlen, "users file \"%s\", line %d, column %d: %s", path, jerr.line, jerr.column,
                    jerr.text);
    struct users *u = calloc(1, sizeof *u);
    int rc = u ? build_table(path, root, u, err, errlen) : fail(err, errlen, "out of memory");
    json_decref(root);
    if (rc != 0) {
        users_free(u);
        return -1;
    }
    *out = u;
    return 0;
}

const struct user_entry *users_find(const struct users *u, const char *name)
{
    struct user_entry key = {.name = (char *)name};
    if (!u || !name || u->count == 0)
        return NULL;
    return bsearch(&key, u->entries, u->count, sizeof *u->entries, cmp_entry);
}

void users_free(struct users *u)
{
    if (!u)
        return;
    for (size_t i = 0; i < u->count; i++)
        entry_clear(&u->entries[i]);
    free(u->entries);
    free(u);
}

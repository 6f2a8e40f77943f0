/* SCRAM-SHA-256 for the proxy: verifiers, the server side that
 * authenticates clients, the client side that logs in upstream, and
 * tls-server-end-point channel binding. Behaviour follows Postgres
 * (src/backend/libpq/auth-scram.c, src/interfaces/libpq/fe-auth-scram.c):
 * same checks, same order, same error texts, so clients see what they would
 * see talking to Postgres directly. See scram.h for the API. */
#include "scram.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saslprep.h"

#define GS2_HEADER_P "p=" SCRAM_CB_TYPE ",,"
#define B64_LEN(n) ((((n) + 2) / 3) * 4)

/* ---------------------------------------------------------------- errors */

struct status_text {
    const char *sqlstate;
    const char *message;
};

static const struct status_text status_texts[] = {
    [SCRAM_OK] = {"00000", "ok"},
    [SCRAM_ERR_INTERNAL] = {"XX000", "internal error in SCRAM authentication"},
    [SCRAM_ERR_STATE] = {"XX000", "invalid SCRAM exchange state"},
    [SCRAM_ERR_MALFORMED] = {"08P01", "malformed SCRAM message"},
    [SCRAM_ERR_INVALID_MECHANISM] = {"08P01", "client selected an invalid SASL authentication mechanism"},
    [SCRAM_ERR_CB_NEGOTIATION] = {"28000", "SCRAM channel binding negotiation error"},
    [SCRAM_ERR_CB_TYPE] = {"08P01", "unsupported SCRAM channel-binding type"},
    [SCRAM_ERR_CB_CHECK] = {"28000", "SCRAM channel binding check failed"},
    [SCRAM_ERR_CB_UNEXPECTED] = {"08P01", "unexpected SCRAM channel-binding attribute in client-final-message"},
    [SCRAM_ERR_AUTHZID] = {"0A000", "client uses authorization identity, but it is not supported"},
    [SCRAM_ERR_EXTENSION] = {"0A000", "client requires an unsupported SCRAM extension"},
    [SCRAM_ERR_NONPRINTABLE_NONCE] = {"08P01", "non-printable characters in SCRAM nonce"},
    [SCRAM_ERR_NONCE] = {"08P01", "invalid SCRAM response"},
    [SCRAM_ERR_AUTH_FAILED] = {"28P01", "password authentication failed for user \"%s\""},
    [SCRAM_ERR_NO_MECHANISM] = {"08001", "none of the server's SASL authentication mechanisms are supported"},
    [SCRAM_ERR_SERVER_ERROR] = {"08001", "error received from server in SCRAM exchange"},
    [SCRAM_ERR_SERVER_SIGNATURE] = {"08001", "incorrect server signature"},
    [SCRAM_ERR_VERIFIER_MISMATCH] = {"08001",
                                     "upstream SCRAM salt or iteration count differs from the proxy's verifier"},
    [SCRAM_ERR_BAD_VERIFIER] = {"XX000", "invalid SCRAM verifier"},
    [SCRAM_ERR_CERT] = {"XX000", "could not compute tls-server-end-point channel binding data"},
};

static const struct status_text *status_text(enum scram_status st)
{
    if ((size_t)st >= sizeof status_texts / sizeof status_texts[0] || !status_texts[st].message)
        return &status_texts[SCRAM_ERR_INTERNAL];
    return &status_texts[st];
}

const char *scram_status_message(enum scram_status st)
{
    return status_text(st)->message;
}

const char *scram_status_sqlstate(enum scram_status st)
{
    return status_text(st)->sqlstate;
}

/* ---------------------------------------------------------------- base64 */

static size_t b64_encode(const unsigned char *in, size_t n, char *out)
{
    if (n == 0) {
        out[0] = '\0';
        return 0;
    }
    return (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Strict RFC 4648 decoding (padding required, no whitespace): SCRAM values
 * come from the network and EVP_DecodeBlock is too lenient about both.
 * Returns the decoded length, or -1 on bad input or when cap is too small. */
static long b64_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
    if (n % 4 != 0)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)in[i + k];
            if (c == '=' && i + 4 == n && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            if (pad || (v[k] = b64_value(c)) < 0)
                return -1;
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        size_t take = (size_t)(3 - pad);
        if (o + take > cap)
            return -1;
        unsigned char bytes[3] = {(unsigned char)(w >> 16), (unsigned char)(w >> 8), (unsigned char)w};
        memcpy(out + o, bytes, take);
        o += take;
    }
    return (long)o;
}

/* ---------------------------------------------------------------- crypto */

static int sha256(const unsigned char *in, size_t n, unsigned char out[SCRAM_KEY_LEN])
{
    unsigned int len = 0;
    return EVP_Digest(in, n, out, &len, EVP_sha256(), NULL) == 1 && len == SCRAM_KEY_LEN;
}

static int hmac_sha256(const unsigned char *key, size_t klen, const void *msg, size_t n,
                       unsigned char out[SCRAM_KEY_LEN])
{
    unsigned int len = 0;
    return HMAC(EVP_sha256(), key, (int)klen, msg, n, out, &len) != NULL && len == SCRAM_KEY_LEN;
}

/* SaltedPassword := Hi(Normalize(password), salt, i) -> ClientKey and
 * ServerKey (RFC 5802 section 3). Normalize is SASLprep as Postgres does
 * it, so every verifier we make and every proof we compute toward the
 * upstream agrees with what Postgres and libpq compute for the password. */
static int derive_keys(const char *pw, size_t pw_len, const unsigned char *salt, size_t salt_len, int iterations,
                       unsigned char client_key[SCRAM_KEY_LEN], unsigned char server_key[SCRAM_KEY_LEN])
{
    unsigned char salted[SCRAM_KEY_LEN];
    char *prep = NULL;
    size_t prep_len = 0;
    if (saslprep_password(pw_len ? pw : "", pw_len, &prep, &prep_len) != 0)
        return 0;
    int ok = prep_len <= INT_MAX &&
             PKCS5_PBKDF2_HMAC(prep, (int)prep_len, salt, (int)salt_len, iterations, EVP_sha256(), SCRAM_KEY_LEN,
                               salted) == 1 &&
             hmac_sha256(salted, SCRAM_KEY_LEN, "Client Key", 10, client_key) &&
             hmac_sha256(salted, SCRAM_KEY_LEN, "Server Key", 10, server_key);
    OPENSSL_cleanse(prep, prep_len);
    free(prep);
    OPENSSL_cleanse(salted, sizeof salted);
    return ok;
}

/* 18 random bytes from OpenSSL's CSPRNG, base64: 24 printable characters. */
static int make_nonce(char out[SCRAM_NONCE_B64_LEN + 1])
{
    unsigned char raw[SCRAM_RAW_NONCE_LEN];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return 0;
    b64_encode(raw, sizeof raw, out);
    return 1;
}

/* AuthMessage = client-first-bare "," server-first "," client-final-without-proof */
static char *auth_message(const char *a, size_t alen, const char *b, size_t blen, const char *c, size_t clen,
                          size_t *out_len)
{
    char *m = malloc(alen + blen + clen + 2);
    if (!m)
        return NULL;
    memcpy(m, a, alen);
    m[alen] = ',';
    memcpy(m + alen + 1, b, blen);
    m[alen + 1 + blen] = ',';
    memcpy(m + alen + blen + 2, c, clen);
    *out_len = alen + blen + clen + 2;
    return m;
}

/* ---------------------------------------------------------------- parsing */

/* A read position in an untrusted message. */
struct cursor {
    const char *p;
    size_t n; /* bytes left */
};

static int is_alpha(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* Reads "<attr>=<value>" up to the next ',' (consumed) or the end. attr 0
 * accepts any letter (extensions) and reports it in *got. */
static int read_attr(struct cursor *c, char attr, char *got, const char **val, size_t *vlen)
{
    if (c->n < 2 || c->p[1] != '=')
        return 0;
    if (attr ? c->p[0] != attr : !is_alpha(c->p[0]))
        return 0;
    if (got)
        *got = c->p[0];
    const char *v = c->p + 2;
    const char *comma = memchr(v, ',', c->n - 2);
    size_t len = comma ? (size_t)(comma - v) : c->n - 2;
    *val = v;
    *vlen = len;
    size_t used = 2 + len + (comma ? 1 : 0);
    c->p += used;
    c->n -= used;
    return 1;
}

/* printable = %x21-2B / %x2D-7E (RFC 5802): printable ASCII except ','. */
static int is_printable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x21 || ch > 0x7e || ch == ',')
            return 0;
    }
    return 1;
}

/* Postgres compares the input length with strlen(): a NUL inside a SCRAM
 * message is malformed, and so is an empty one. */
static const char *message_shape_error(const unsigned char *data, size_t len)
{
    if (len == 0)
        return "The message is empty.";
    if (memchr(data, '\0', len))
        return "Message length does not match input length.";
    if (len > SCRAM_MAX_MESSAGE_LEN)
        return "The message is too long.";
    return NULL;
}

static int parse_positive_int(const char *s, size_t n, int *out)
{
    long long v = 0;
    if (n == 0 || n > 10)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > INT_MAX)
        return 0;
    *out = (int)v;
    return 1;
}

static char *dup_bytes(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static void free_secret(char **p, size_t len)
{
    if (*p) {
        OPENSSL_cleanse(*p, len);
        free(*p);
        *p = NULL;
    }
}

/* ---------------------------------------------------------------- verifiers */

static int split_at(struct cursor *c, char sep, const char **part, size_t *plen)
{
    const char *at = memchr(c->p, sep, c->n);
    if (!at)
        return 0;
    *part = c->p;
    *plen = (size_t)(at - c->p);
    c->n -= *plen + 1;
    c->p = at + 1;
    return 1;
}

enum scram_status scram_verifier_parse(struct scram_verifier *v, const char *text, size_t len)
{
    struct cursor c = {text, len};
    const char *scheme, *iter, *salt, *stored;
    size_t scheme_len, iter_len, salt_len, stored_len;
    struct scram_verifier t;
    memset(&t, 0, sizeof t);
    if (!split_at(&c, '$', &scheme, &scheme_len) || scheme_len != strlen(SCRAM_MECH) ||
        memcmp(scheme, SCRAM_MECH, scheme_len) != 0 || !split_at(&c, ':', &iter, &iter_len) ||
        !split_at(&c, '$', &salt, &salt_len) || !split_at(&c, ':', &stored, &stored_len))
        return SCRAM_ERR_BAD_VERIFIER;
    long sl = b64_decode(salt, salt_len, t.salt, sizeof t.salt);
    enum scram_status st = SCRAM_ERR_BAD_VERIFIER;
    if (parse_positive_int(iter, iter_len, &t.iterations) && sl > 0 &&
        b64_decode(stored, stored_len, t.stored_key, SCRAM_KEY_LEN) == SCRAM_KEY_LEN &&
        b64_decode(c.p, c.n, t.server_key, SCRAM_KEY_LEN) == SCRAM_KEY_LEN) {
        t.salt_len = (size_t)sl;
        *v = t;
        st = SCRAM_OK;
    }
    OPENSSL_cleanse(&t, sizeof t);
    return st;
}

int scram_verifier_format(const struct scram_verifier *v, char *out, size_t cap)
{
    char salt[B64_LEN(SCRAM_MAX_SALT_LEN) + 1], stored[B64_LEN(SCRAM_KEY_LEN) + 1],
        server[B64_LEN(SCRAM_KEY_LEN) + 1];
    if (v->salt_len == 0 || v->salt_len > SCRAM_MAX_SALT_LEN)
        return -1;
    b64_encode(v->salt, v->salt_len, salt);
    b64_encode(v->stored_key, SCRAM_KEY_LEN, stored);
    b64_encode(v->server_key, SCRAM_KEY_LEN, server);
    int n = snprintf(out, cap, "%s$%d:%s$%s:%s", SCRAM_MECH, v->iterations, salt, stored, server);
    OPENSSL_cleanse(stored, sizeof stored);
    OPENSSL_cleanse(server, sizeof server);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

enum scram_status scram_verifier_derive(struct scram_verifier *v, const char *password, size_t pw_len,
                                        const unsigned char *salt, size_t salt_len, int iterations)
{
    unsigned char client_key[SCRAM_KEY_LEN];
    if (salt_len == 0 || salt_len > SCRAM_MAX_SALT_LEN || iterations < 1)
        return SCRAM_ERR_BAD_VERIFIER;
    memset(v, 0, sizeof *v);
    v->iterations = iterations;
    v->salt_len = salt_len;
    memcpy(v->salt, salt, salt_len);
    int ok = derive_keys(password, pw_len, salt, salt_len, iterations, client_key, v->server_key) &&
             sha256(client_key, SCRAM_KEY_LEN, v->stored_key);
    OPENSSL_cleanse(client_key, sizeof client_key);
    if (!ok) {
        scram_verifier_wipe(v);
        return SCRAM_ERR_INTERNAL;
    }
    return SCRAM_OK;
}

enum scram_status scram_verifier_from_password(struct scram_verifier *v, const char *password, size_t pw_len,
                                               int iterations)
{
    unsigned char salt[SCRAM_SALT_LEN];
    if (RAND_bytes(salt, sizeof salt) != 1)
        return SCRAM_ERR_INTERNAL;
    return scram_verifier_derive(v, password, pw_len, salt, sizeof salt,
                                 iterations > 0 ? iterations : SCRAM_DEFAULT_ITERATIONS);
}

int scram_verifier_check_password(const struct scram_verifier *v, const char *password, size_t pw_len)
{
    struct scram_verifier d;
    if (scram_verifier_derive(&d, password, pw_len, v->salt, v->salt_len, v->iterations) != SCRAM_OK)
        return 0;
    int same = CRYPTO_memcmp(d.stored_key, v->stored_key, SCRAM_KEY_LEN) == 0 &&
               CRYPTO_memcmp(d.server_key, v->server_key, SCRAM_KEY_LEN) == 0;
    scram_verifier_wipe(&d);
    return same;
}

void scram_verifier_wipe(struct scram_verifier *v)
{
    OPENSSL_cleanse(v, sizeof *v);
}

/* ---------------------------------------------------------------- channel binding */

enum scram_status scram_tls_server_end_point(X509 *cert, unsigned char *out, size_t *out_len)
{
    int algo_nid = NID_undef;
    const EVP_MD *md;
    unsigned int n = 0;
    if (!cert || !OBJ_find_sigid_algs(X509_get_signature_nid(cert), &algo_nid, NULL))
        return SCRAM_ERR_CERT;
    /* RFC 5929 4.1: MD5 and SHA-1 are replaced by SHA-256. Signature
     * schemes without a separate digest (Ed25519) have no defined hash. */
    if (algo_nid == NID_md5 || algo_nid == NID_sha1)
        md = EVP_sha256();
    else if (algo_nid == NID_undef || !(md = EVP_get_digestbynid(algo_nid)))
        return SCRAM_ERR_CERT;
    if (EVP_MD_get_size(md) > SCRAM_MAX_CB_LEN || X509_digest(cert, md, out, &n) != 1)
        return SCRAM_ERR_CERT;
    *out_len = n;
    return SCRAM_OK;
}

/* ---------------------------------------------------------------- server side */

static enum scram_status server_fail(struct scram_server *s, enum scram_status st, const char *detail)
{
    s->state = SCRAM_SERVER_FAILED;
    s->detail = detail;
    return st;
}

static enum scram_status server_setup(struct scram_server *s, int client_on_tls, const unsigned char *cb_data,
                                      size_t cb_len)
{
    if (cb_len > SCRAM_MAX_CB_LEN || (cb_len && !cb_data))
        return SCRAM_ERR_INTERNAL;
    s->state = SCRAM_SERVER_INIT;
    s->client_on_tls = client_on_tls != 0;
    s->cb_len = client_on_tls ? cb_len : 0;
    if (s->cb_len)
        memcpy(s->cb_data, cb_data, cb_len);
    /* Like Postgres: -PLUS only over TLS, and only when we can bind. */
    s->offer_plus = s->client_on_tls && s->cb_len > 0;
    return SCRAM_OK;
}

enum scram_status scram_server_init(struct scram_server *s, const struct scram_verifier *v, int client_on_tls,
                                    const unsigned char *cb_data, size_t cb_len)
{
    memset(s, 0, sizeof *s);
    if (!v || v->salt_len == 0 || v->salt_len > SCRAM_MAX_SALT_LEN || v->iterations < 1)
        return SCRAM_ERR_BAD_VERIFIER;
    s->verifier = *v;
    return server_setup(s, client_on_tls, cb_data, cb_len);
}

enum scram_status scram_server_init_mock(struct scram_server *s, const char *user, size_t user_len,
                                         const unsigned char *secret, size_t secret_len, int client_on_tls,
                                         const unsigned char *cb_data, size_t cb_len)
{
    unsigned char digest[SCRAM_KEY_LEN];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int dlen = 0;
    memset(s, 0, sizeof *s);
    /* Same user, same salt: repeated probes look like a real account. */
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, user, user_len) == 1 && EVP_DigestUpdate(ctx, secret, secret_len) == 1 &&
             EVP_DigestFinal_ex(ctx, digest, &dlen) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return SCRAM_ERR_INTERNAL;
    memcpy(s->verifier.salt, digest, SCRAM_SALT_LEN);
    s->verifier.salt_len = SCRAM_SALT_LEN;
    s->verifier.iterations = SCRAM_DEFAULT_ITERATIONS;
    s->doomed = 1;
    return server_setup(s, client_on_tls, cb_data, cb_len);
}

size_t scram_server_mechanisms(const struct scram_server *s, unsigned char *out, size_t cap)
{
    size_t need = (s->offer_plus ? sizeof SCRAM_MECH_PLUS : 0) + sizeof SCRAM_MECH + 1;
    if (cap < need)
        return 0;
    size_t o = 0;
    if (s->offer_plus) {
        memcpy(out, SCRAM_MECH_PLUS, sizeof SCRAM_MECH_PLUS);
        o += sizeof SCRAM_MECH_PLUS;
    }
    memcpy(out + o, SCRAM_MECH, sizeof SCRAM_MECH);
    o += sizeof SCRAM_MECH;
    out[o++] = '\0';
    return o;
}

/* gs2-cbind-flag and the authzid field, as Postgres checks them. */
static enum scram_status server_read_gs2(struct scram_server *s, struct cursor *c)
{
    const char *val;
    size_t vlen;
    char flag = c->p[0];
    if (flag == 'n' || flag == 'y') {
        if (s->cb_in_use)
            return server_fail(s, SCRAM_ERR_MALFORMED, "The client selected SCRAM-SHA-256-PLUS, but the SCRAM "
                                                        "message does not include channel binding data.");
        /* 'y' means "I can bind but you did not offer it": since we did,
         * the mechanism list was tampered with (RFC 5802 section 6). */
        if (flag == 'y' && s->offer_plus)
            return server_fail(s, SCRAM_ERR_CB_NEGOTIATION,
                               "The client supports SCRAM channel binding but thinks the server does not.  "
                               "However, this server does support channel binding.");
        if (c->n < 2 || c->p[1] != ',')
            return server_fail(s, SCRAM_ERR_MALFORMED, "Comma expected after the channel-binding flag.");
        c->p += 2;
        c->n -= 2;
    } else if (flag == 'p') {
        if (!s->cb_in_use)
            return server_fail(s, SCRAM_ERR_MALFORMED, "The client selected SCRAM-SHA-256 without channel "
                                                        "binding, but the SCRAM message includes channel binding "
                                                        "data.");
        if (!read_attr(c, 'p', NULL, &val, &vlen))
            return server_fail(s, SCRAM_ERR_MALFORMED, "Malformed channel-binding flag.");
        if (vlen != strlen(SCRAM_CB_TYPE) || memcmp(val, SCRAM_CB_TYPE, vlen) != 0)
            return server_fail(s, SCRAM_ERR_CB_TYPE, NULL);
    } else {
        return server_fail(s, SCRAM_ERR_MALFORMED, "Unexpected channel-binding flag.");
    }
    s->cbind_flag = flag;
    if (c->n && c->p[0] == 'a')
        return server_fail(s, SCRAM_ERR_AUTHZID, NULL);
    if (c->n == 0 || c->p[0] != ',')
        return server_fail(s, SCRAM_ERR_MALFORMED, "Unexpected attribute in client-first-message.");
    c->p++;
    c->n--;
    return SCRAM_OK;
}

/* client-first-message-bare: [m=...,] n=<ignored>,r=<nonce>[,ext...] */
static enum scram_status server_read_bare(struct scram_server *s, struct cursor *c)
{
    const char *val, *nonce;
    size_t vlen, nonce_len;
    char attr;
    s->client_first_bare = dup_bytes(c->p, c->n);
    if (!s->client_first_bare)
        return server_fail(s, SCRAM_ERR_INTERNAL, NULL);
    s->client_first_bare_len = c->n;
    if (c->n && c->p[0] == 'm')
        return server_fail(s, SCRAM_ERR_EXTENSION, NULL);
    /* The user name is in the startup packet; libpq sends "n=," here. */
    if (!read_attr(c, 'n', NULL, &val, &vlen))
        return server_fail(s, SCRAM_ERR_MALFORMED, "Attribute 'n' expected in client-first-message.");
    if (!read_attr(c, 'r', NULL, &nonce, &nonce_len) || nonce_len == 0)
        return server_fail(s, SCRAM_ERR_MALFORMED, "Attribute 'r' expected in client-first-message.");
    if (!is_printable(nonce, nonce_len))
        return server_fail(s, SCRAM_ERR_NONPRINTABLE_NONCE, NULL);
    while (c->n)
        if (!read_attr(c, 0, &attr, &val, &vlen))
            return server_fail(s, SCRAM_ERR_MALFORMED, "Attribute expected in client-first-message.");
    s->client_nonce = dup_bytes(nonce, nonce_len);
    if (!s->client_nonce)
        return server_fail(s, SCRAM_ERR_INTERNAL, NULL);
    s->client_nonce_len = nonce_len;
    return SCRAM_OK;
}

static enum scram_status server_build_first(struct scram_server *s)
{
    char salt[B64_LEN(SCRAM_MAX_SALT_LEN) + 1];
    if (!make_nonce(s->server_nonce))
        return server_fail(s, SCRAM_ERR_INTERNAL, NULL);
    b64_encode(s->verifier.salt, s->verifier.salt_len, salt);
    size_t cap = s->client_nonce_len + SCRAM_NONCE_B64_LEN + strlen(salt) + 32;
    s->server_first = malloc(cap);
    if (!s->server_first)
        return server_fail(s, SCRAM_ERR_INTERNAL, NULL);
    int n = snprintf(s->server_first, cap, "r=%s%s,s=%s,i=%d", s->client_nonce, s->server_nonce, salt,
                     s->verifier.iterations);
    if (n < 0 || (size_t)n >= cap)
        return server_fail(s, SCRAM_ERR_INTERNAL, NULL);
    s->server_first_len = (size_t)n;
    s->state = SCRAM_SERVER_SENT_FIRST;
    return SCRAM_OK;
}

static enum scram_status server_client_first(struct scram_server *s, const unsigned char *data, size_t len,
                                             const unsigned char **out, size_t *out_len)
{
    const char *shape = message_shape_error(data, len);
    if (shape)
        return server_fail(s, SCRAM_ERR_MALFORMED, shape);
    struct cursor c = {(const char *)data, len};
    enum scram_status st;
    if ((st = server_read_gs2(s, &c)) != SCRAM_OK || (st = server_read_bare(s, &c)) != SCRAM_OK ||
        (st = server_build_first(s)) != SCRAM_OK)
        return st;
    *out = (const unsigned char *)s->server_first;
    *out_len = s->server_first_len;
    return SCRAM_OK;
}

enum scram_status scram_server_handle_initial(struct scram_server *s, const unsigned char *body, size_t len,
                                              const unsigned char **out, size_t *out_len)
{
    static const unsigned char empty[1] = {0};
    if (s->state != SCRAM_SERVER_INIT)
        return server_fail(s, SCRAM_ERR_STATE, NULL);
    const unsigned char *nul = memchr(body, '\0', len);
    if (!nul || (size_t)(body + len - (nul + 1)) < 4)
        return server_fail(s, SCRAM_ERR_MALFORMED, "Invalid SASLInitialResponse message.");
    size_t mech_len = (size_t)(nul - body);
    const unsigned char *p = nul + 1;
    int32_t dlen = (int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
    size_t rest = (size_t)(body + len - (p + 4));
    if (!(dlen == -1 && rest == 0) && !(dlen >= 0 && (size_t)dlen == rest))
        return server_fail(s, SCRAM_ERR_MALFORMED, "Invalid SASLInitialResponse message.");
    if (mech_len == strlen(SCRAM_MECH) && memcmp(body, SCRAM_MECH, mech_len) == 0)
        s->cb_in_use = 0;
    else if (s->offer_plus && mech_len == strlen(SCRAM_MECH_PLUS) && memcmp(body, SCRAM_MECH_PLUS, mech_len) == 0)
        s->cb_in_use = 1;
    else
        return server_fail(s, SCRAM_ERR_INVALID_MECHANISM, NULL);
    if (dlen == -1) {
        /* No initial response: Postgres sends an empty challenge and reads
         * the client-first-message from the next SASLResponse. */
        s->state = SCRAM_SERVER_WAIT_FIRST;
        *out = empty;
        *out_len = 0;
        return SCRAM_OK;
    }
    return server_client_first(s, p + 4, rest, out, out_len);
}

/* Expected c= value: base64 of the gs2 header (+ certificate hash for 'p'). */
static enum scram_status server_check_cbind(struct scram_server *s, const char *val, size_t vlen)
{
    if (!s->cb_in_use) {
        int ok = (s->cbind_flag == 'n' && vlen == 4 && memcmp(val, "biws", 4) == 0) ||
                 (s->cbind_flag == 'y' && vlen == 4 && memcmp(val, "eSws", 4) == 0);
        return ok ? SCRAM_OK : server_fail(s, SCRAM_ERR_CB_UNEXPECTED, NULL);
    }
    unsigned char input[sizeof GS2_HEADER_P - 1 + SCRAM_MAX_CB_LEN];
    char expected[B64_LEN(sizeof input) + 1];
    size_t hlen = sizeof GS2_HEADER_P - 1;
    memcpy(input, GS2_HEADER_P, hlen);
    memcpy(input + hlen, s->cb_data, s->cb_len);
    size_t elen = b64_encode(input, hlen + s->cb_len, expected);
    if (vlen != elen || CRYPTO_memcmp(val, expected, elen) != 0)
        return server_fail(s, SCRAM_ERR_CB_CHECK, NULL);
    return SCRAM_OK;
}

/* Recovers ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage) and
 * checks H(ClientKey) == StoredKey; then builds the server signature. The
 * whole computation runs even for a doomed (unknown user) exchange so its
 * timing does not tell the two apart. */
static enum scram_status server_verify_proof(struct scram_server *s, const unsigned char proof[SCRAM_KEY_LEN],
                                             const char *without_proof, size_t wp_len)
{
    unsigned char sig[SCRAM_KEY_LEN], key[SCRAM_KEY_LEN], stored[SCRAM_KEY_LEN];
    size_t am_len;
    char *am = auth_message(s->client_first_bare, s->client_first_bare_len, s->server_first, s->server_first_len,
                            without_proof, wp_len, &am_len);
    if (!am || !hmac_sha256(s->verifier.stored_key, SCRAM_KEY_LEN, am, am_len, sig)) {
        free(am);
        return server_fail(s, SCRAM_ERR_INTERNAL, NULL);
    }
    for (int i = 0; i < SCRAM_KEY_LEN; i++)
        key[i] = proof[i] ^ sig[i];
    int ok = sha256(key, SCRAM_KEY_LEN, stored) && CRYPTO_memcmp(stored, s->verifier.stored_key, SCRAM_KEY_LEN) == 0;
    enum scram_status st = SCRAM_OK;
    if (!ok || s->doomed)
        st = server_fail(s, SCRAM_ERR_AUTH_FAILED, NULL);
    else if (!hmac_sha256(s->verifier.server_key, SCRAM_KEY_LEN, am, am_len, sig))
        st = server_fail(s, SCRAM_ERR_INTERNAL, NULL);
    if (st == SCRAM_OK) {
        memcpy(s->client_key, key, SCRAM_KEY_LEN);
        s->server_final = malloc(2 + B64_LEN(SCRAM_KEY_LEN) + 1);
        if (!s->server_final)
            st = server_fail(s, SCRAM_ERR_INTERNAL, NULL);
        else {
            memcpy(s->server_final, "v=", 2);
            s->server_final_len = 2 + b64_encode(sig, SCRAM_KEY_LEN, s->server_final + 2);
        }
    }
    OPENSSL_cleanse(am, am_len);
    free(am);
    OPENSSL_cleanse(key, sizeof key);
    OPENSSL_cleanse(sig, sizeof sig);
    return st;
}

/* c=<cbind>,r=<nonce>[,ext...],p=<proof> */
static enum scram_status server_client_final(struct scram_server *s, const unsigned char *data, size_t len,
                                             const unsigned char **out, size_t *out_len)
{
    const char *shape = message_shape_error(data, len);
    if (shape)
        return server_fail(s, SCRAM_ERR_MALFORMED, shape);
    struct cursor c = {(const char *)data, len};
    const char *val = NULL, *nonce, *proof_start;
    size_t vlen = 0, nonce_len;
    char attr = 0;
    enum scram_status st;
    if (!read_attr(&c, 'c', NULL, &val, &vlen))
        return server_fail(s, SCRAM_ERR_MALFORMED, "Attribute 'c' expected in client-final-message.");
    if ((st = server_check_cbind(s, val, vlen)) != SCRAM_OK)
        return st;
    if (!read_attr(&c, 'r', NULL, &nonce, &nonce_len))
        return server_fail(s, SCRAM_ERR_MALFORMED, "Attribute 'r' expected in client-final-message.");
    do { /* skip extensions up to the proof */
        proof_start = c.p - 1; /* the ',' that read_attr consumed */
        if (c.n == 0 || !read_attr(&c, 0, &attr, &val, &vlen))
            return server_fail(s, SCRAM_ERR_MALFORMED, "Proof expected in client-final-message.");
    } while (attr != 'p');
    unsigned char proof[SCRAM_KEY_LEN];
    if (b64_decode(val, vlen, proof, sizeof proof) != SCRAM_KEY_LEN)
        return server_fail(s, SCRAM_ERR_MALFORMED, "Malformed proof in client-final-message.");
    if (c.n != 0)
        return server_fail(s, SCRAM_ERR_MALFORMED, "Garbage found at the end of client-final-message.");
    if (nonce_len != s->client_nonce_len + SCRAM_NONCE_B64_LEN ||
        CRYPTO_memcmp(nonce, s->client_nonce, s->client_nonce_len) != 0 ||
        CRYPTO_memcmp(nonce + s->client_nonce_len, s->server_nonce, SCRAM_NONCE_B64_LEN) != 0)
        return server_fail(s, SCRAM_ERR_NONCE, "Nonce does not match.");
    st = server_verify_proof(s, proof, (const char *)data, (size_t)(proof_start - (const char *)data));
    OPENSSL_cleanse(proof, sizeof proof);
    if (st != SCRAM_OK)
        return st;
    s->state = SCRAM_SERVER_SUCCESS;
    *out = (const unsigned char *)s->server_final;
    *out_len = s->server_final_len;
    return SCRAM_OK;
}

enum scram_status scram_server_handle_response(struct scram_server *s, const unsigned char *data, size_t len,
                                               const unsigned char **out, size_t *out_len)
{
    if (s->state == SCRAM_SERVER_WAIT_FIRST)
        return server_client_first(s, data, len, out, out_len);
    if (s->state == SCRAM_SERVER_SENT_FIRST)
        return server_client_final(s, data, len, out, out_len);
    return server_fail(s, SCRAM_ERR_STATE, NULL);
}

enum scram_status scram_server_client_key(const struct scram_server *s, unsigned char out[SCRAM_KEY_LEN])
{
    if (s->state != SCRAM_SERVER_SUCCESS)
        return SCRAM_ERR_STATE;
    memcpy(out, s->client_key, SCRAM_KEY_LEN);
    return SCRAM_OK;
}

void scram_server_free(struct scram_server *s)
{
    free_secret(&s->client_first_bare, s->client_first_bare_len);
    free_secret(&s->client_nonce, s->client_nonce_len);
    free_secret(&s->server_first, s->server_first_len);
    free_secret(&s->server_final, s->server_final_len);
    OPENSSL_cleanse(s, sizeof *s);
}

/* ---------------------------------------------------------------- client side */

static enum scram_status client_fail(struct scram_client *c, enum scram_status st, const char *detail)
{
    c->state = SCRAM_CLIENT_FAILED;
    c->detail = detail;
    return st;
}

enum scram_status scram_client_init_password(struct scram_client *c, const char *password, size_t pw_len)
{
    memset(c, 0, sizeof *c);
    c->password = dup_bytes(password ? password : "", password ? pw_len : 0);
    if (!c->password)
        return SCRAM_ERR_INTERNAL;
    c->password_len = password ? pw_len : 0;
    return SCRAM_OK;
}

enum scram_status scram_client_init_client_key(struct scram_client *c, const unsigned char client_key[SCRAM_KEY_LEN],
                                               const struct scram_verifier *v)
{
    memset(c, 0, sizeof *c);
    if (!v || v->salt_len == 0 || v->salt_len > SCRAM_MAX_SALT_LEN || v->iterations < 1)
        return SCRAM_ERR_BAD_VERIFIER;
    c->use_client_key = 1;
    memcpy(c->client_key, client_key, SCRAM_KEY_LEN);
    c->verifier = *v;
    return SCRAM_OK;
}

void scram_client_require_channel_binding(struct scram_client *c, int require)
{
    c->require_cb = require != 0;
}

/* Picks the mechanism and gs2 flag the way libpq does. */
static enum scram_status client_choose(struct scram_client *c, const unsigned char *mechs, size_t len, int on_tls,
                                       size_t cb_len)
{
    int has_plus = 0, has_plain = 0;
    size_t pos = 0;
    for (;;) {
        const unsigned char *nul = pos < len ? memchr(mechs + pos, '\0', len - pos) : NULL;
        if (!nul)
            return client_fail(c, SCRAM_ERR_MALFORMED, "Invalid AuthenticationSASL mechanism list.");
        size_t n = (size_t)(nul - (mechs + pos));
        if (n == 0)
            break;
        has_plus |= n == strlen(SCRAM_MECH_PLUS) && memcmp(mechs + pos, SCRAM_MECH_PLUS, n) == 0;
        has_plain |= n == strlen(SCRAM_MECH) && memcmp(mechs + pos, SCRAM_MECH, n) == 0;
        pos += n + 1;
    }
    if (has_plus && !on_tls)
        return client_fail(c, SCRAM_ERR_NO_MECHANISM,
                           "server offered SCRAM-SHA-256-PLUS authentication over a non-SSL connection");
    /* Like libpq: over TLS, a server offering -PLUS gets -PLUS. Without our
     * hash of its certificate we stop, rather than answer 'n' and let a
     * middlebox that presents a certificate we cannot hash strip the binding. */
    if (has_plus && cb_len == 0)
        return client_fail(c, SCRAM_ERR_CERT, "could not compute the channel binding data of the server certificate");
    c->cb_in_use = has_plus;
    if (!c->cb_in_use && c->require_cb)
        return client_fail(c, SCRAM_ERR_NO_MECHANISM, "channel binding is required, but server did not offer an "
                                                      "authentication method that supports channel binding");
    if (!c->cb_in_use && !has_plain)
        return client_fail(c, SCRAM_ERR_NO_MECHANISM, NULL);
    /* 'y': we could bind but the server did not offer it; a server that can
     * bind then knows the list was tampered with. */
    c->cbind_flag = c->cb_in_use ? 'p' : (on_tls && cb_len > 0) ? 'y' : 'n';
    return SCRAM_OK;
}

static const char *client_gs2_header(const struct scram_client *c)
{
    return c->cbind_flag == 'p' ? GS2_HEADER_P : c->cbind_flag == 'y' ? "y,," : "n,,";
}

static int client_set_out(struct scram_client *c, size_t cap)
{
    if (c->out) {
        OPENSSL_cleanse(c->out, c->out_len);
        free(c->out);
    }
    c->out_len = 0;
    c->out = malloc(cap);
    return c->out != NULL;
}

enum scram_status scram_client_initial_response(struct scram_client *c, const unsigned char *mechs, size_t mechs_len,
                                                int on_tls, const unsigned char *cb_data, size_t cb_len,
                                                const unsigned char **out, size_t *out_len)
{
    enum scram_status st;
    if (c->state != SCRAM_CLIENT_INIT)
        return client_fail(c, SCRAM_ERR_STATE, NULL);
    if (cb_len > SCRAM_MAX_CB_LEN || (cb_len && !cb_data))
        return client_fail(c, SCRAM_ERR_INTERNAL, NULL);
    if ((st = client_choose(c, mechs, mechs_len, on_tls, on_tls ? cb_len : 0)) != SCRAM_OK)
        return st;
    if (c->cb_in_use) {
        memcpy(c->cb_data, cb_data, cb_len);
        c->cb_len = cb_len;
    }
    if (!make_nonce(c->client_nonce))
        return client_fail(c, SCRAM_ERR_INTERNAL, NULL);
    /* The user name travels in the startup packet; libpq sends it empty. */
    c->client_first_bare_len = 5 + SCRAM_NONCE_B64_LEN;
    c->client_first_bare = malloc(c->client_first_bare_len + 1);
    if (!c->client_first_bare)
        return client_fail(c, SCRAM_ERR_INTERNAL, NULL);
    snprintf(c->client_first_bare, c->client_first_bare_len + 1, "n=,r=%s", c->client_nonce);
    const char *mech = c->cb_in_use ? SCRAM_MECH_PLUS : SCRAM_MECH, *gs2 = client_gs2_header(c);
    size_t mlen = strlen(mech) + 1, glen = strlen(gs2), dlen = glen + c->client_first_bare_len;
    if (!client_set_out(c, mlen + 4 + dlen))
        return client_fail(c, SCRAM_ERR_INTERNAL, NULL);
    memcpy(c->out, mech, mlen);
    unsigned char be[4] = {(unsigned char)(dlen >> 24), (unsigned char)(dlen >> 16), (unsigned char)(dlen >> 8),
                           (unsigned char)dlen};
    memcpy(c->out + mlen, be, 4);
    memcpy(c->out + mlen + 4, gs2, glen);
    memcpy(c->out + mlen + 4 + glen, c->client_first_bare, c->client_first_bare_len);
    c->out_len = mlen + 4 + dlen;
    c->state = SCRAM_CLIENT_SENT_FIRST;
    *out = c->out;
    *out_len = c->out_len;
    return SCRAM_OK;
}

/* r=<client nonce + server nonce>,s=<salt>,i=<iterations> */
static enum scram_status client_read_server_first(struct scram_client *c, struct cursor *m, const char **nonce,
                                                  size_t *nonce_len, unsigned char *salt, size_t *salt_len,
                                                  int *iterations)
{
    const char *val;
    size_t vlen;
    if (!read_attr(m, 'r', NULL, nonce, nonce_len))
        return client_fail(c, SCRAM_ERR_MALFORMED, "Attribute 'r' expected in server-first-message.");
    if (*nonce_len <= SCRAM_NONCE_B64_LEN || memcmp(*nonce, c->client_nonce, SCRAM_NONCE_B64_LEN) != 0 ||
        !is_printable(*nonce, *nonce_len))
        return client_fail(c, SCRAM_ERR_NONCE, "Nonce does not match.");
    long sl;
    if (!read_attr(m, 's', NULL, &val, &vlen) ||
        (sl = b64_decode(val, vlen, salt, SCRAM_MAX_SALT_LEN)) <= 0)
        return client_fail(c, SCRAM_ERR_MALFORMED, "Invalid salt in server-first-message.");
    *salt_len = (size_t)sl;
    if (!read_attr(m, 'i', NULL, &val, &vlen) || !parse_positive_int(val, vlen, iterations))
        return client_fail(c, SCRAM_ERR_MALFORMED, "Invalid iteration count in server-first-message.");
    if (m->n != 0)
        return client_fail(c, SCRAM_ERR_MALFORMED, "Garbage found at the end of server-first-message.");
    return SCRAM_OK;
}

/* ClientKey and ServerKey for this exchange: from the password, or the
 * recovered ClientKey when the upstream uses the same salt and count. */
static enum scram_status client_keys(struct scram_client *c, const unsigned char *salt, size_t salt_len,
                                     int iterations, unsigned char ck[SCRAM_KEY_LEN], unsigned char sk[SCRAM_KEY_LEN])
{
    if (!c->use_client_key)
        return derive_keys(c->password, c->password_len, salt, salt_len, iterations, ck, sk)
                   ? SCRAM_OK
                   : client_fail(c, SCRAM_ERR_INTERNAL, NULL);
    if (salt_len != c->verifier.salt_len || memcmp(salt, c->verifier.salt, salt_len) != 0 ||
        iterations != c->verifier.iterations)
        return client_fail(c, SCRAM_ERR_VERIFIER_MISMATCH,
                           "The upstream stores a different SCRAM verifier for this user (salt or iteration "
                           "count differ), so the ClientKey recovered from the client cannot log in: put the "
                           "upstream's verifier in the users file, or the user's plain password.");
    memcpy(ck, c->client_key, SCRAM_KEY_LEN);
    memcpy(sk, c->verifier.server_key, SCRAM_KEY_LEN);
    return SCRAM_OK;
}

/* c=base64(gs2 header [+ cb data]),r=<nonce> */
static char *client_final_without_proof(const struct scram_client *c, const char *nonce, size_t nonce_len,
                                        size_t *len)
{
    unsigned char input[sizeof GS2_HEADER_P - 1 + SCRAM_MAX_CB_LEN];
    const char *gs2 = client_gs2_header(c);
    size_t glen = strlen(gs2);
    memcpy(input, gs2, glen);
    if (c->cb_in_use) {
        memcpy(input + glen, c->cb_data, c->cb_len);
        glen += c->cb_len;
    }
    char *m = malloc(2 + B64_LEN(sizeof input) + 3 + nonce_len + 1);
    if (!m)
        return NULL;
    memcpy(m, "c=", 2);
    size_t o = 2 + b64_encode(input, glen, m + 2);
    memcpy(m + o, ",r=", 3);
    memcpy(m + o + 3, nonce, nonce_len);
    *len = o + 3 + nonce_len;
    m[*len] = '\0';
    return m;
}

/* Builds client-final = without-proof ",p=" base64(ClientKey XOR
 * HMAC(StoredKey, AuthMessage)) and remembers the expected server signature. */
static enum scram_status client_build_final(struct scram_client *c, const struct cursor *server_first,
                                            const char *nonce, size_t nonce_len, const unsigned char ck[SCRAM_KEY_LEN],
                                            const unsigned char sk[SCRAM_KEY_LEN])
{
    unsigned char stored[SCRAM_KEY_LEN], proof[SCRAM_KEY_LEN];
    size_t wp_len = 0, am_len = 0;
    char *wp = client_final_without_proof(c, nonce, nonce_len, &wp_len);
    char *am = wp ? auth_message(c->client_first_bare, c->client_first_bare_len, server_first->p, server_first->n,
                                 wp, wp_len, &am_len)
                  : NULL;
    int ok = am && sha256(ck, SCRAM_KEY_LEN, stored) && hmac_sha256(stored, SCRAM_KEY_LEN, am, am_len, proof) &&
             hmac_sha256(sk, SCRAM_KEY_LEN, am, am_len, c->server_signature) &&
             client_set_out(c, wp_len + 3 + B64_LEN(SCRAM_KEY_LEN) + 1);
    if (ok) {
        for (int i = 0; i < SCRAM_KEY_LEN; i++)
            proof[i] ^= ck[i];
        memcpy(c->out, wp, wp_len);
        memcpy(c->out + wp_len, ",p=", 3);
        c->out_len = wp_len + 3 + b64_encode(proof, SCRAM_KEY_LEN, (char *)c->out + wp_len + 3);
    }
    OPENSSL_cleanse(stored, sizeof stored);
    OPENSSL_cleanse(proof, sizeof proof);
    if (am)
        OPENSSL_cleanse(am, am_len);
    free(am);
    free(wp);
    return ok ? SCRAM_OK : client_fail(c, SCRAM_ERR_INTERNAL, NULL);
}

enum scram_status scram_client_handle_continue(struct scram_client *c, const unsigned char *data, size_t len,
                                               const unsigned char **out, size_t *out_len)
{
    if (c->state != SCRAM_CLIENT_SENT_FIRST)
        return client_fail(c, SCRAM_ERR_STATE, NULL);
    const char *shape = message_shape_error(data, len);
    if (shape)
        return client_fail(c, SCRAM_ERR_MALFORMED, shape);
    struct cursor whole = {(const char *)data, len}, m = whole;
    const char *nonce;
    size_t nonce_len, salt_len;
    unsigned char salt[SCRAM_MAX_SALT_LEN], ck[SCRAM_KEY_LEN], sk[SCRAM_KEY_LEN];
    int iterations;
    enum scram_status st = client_read_server_first(c, &m, &nonce, &nonce_len, salt, &salt_len, &iterations);
    if (st == SCRAM_OK)
        st = client_keys(c, salt, salt_len, iterations, ck, sk);
    if (st == SCRAM_OK)
        st = client_build_final(c, &whole, nonce, nonce_len, ck, sk);
    OPENSSL_cleanse(ck, sizeof ck);
    OPENSSL_cleanse(sk, sizeof sk);
    if (st != SCRAM_OK)
        return st;
    c->state = SCRAM_CLIENT_SENT_FINAL;
    *out = c->out;
    *out_len = c->out_len;
    return SCRAM_OK;
}

/* Keeps the server's e= value for logs, printable characters only. */
static void client_keep_server_error(struct scram_client *c, const char *v, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < sizeof c->server_error; i++)
        c->server_error[o++] = (v[i] >= 0x20 && v[i] < 0x7f) ? v[i] : '?';
    c->server_error[o] = '\0';
}

enum scram_status scram_client_handle_final(struct scram_client *c, const unsigned char *data, size_t len)
{
    if (c->state != SCRAM_CLIENT_SENT_FINAL)
        return client_fail(c, SCRAM_ERR_STATE, NULL);
    const char *shape = message_shape_error(data, len);
    if (shape)
        return client_fail(c, SCRAM_ERR_MALFORMED, shape);
    struct cursor m = {(const char *)data, len};
    const char *val;
    size_t vlen;
    unsigned char sig[SCRAM_KEY_LEN];
    if (read_attr(&m, 'e', NULL, &val, &vlen)) {
        client_keep_server_error(c, val, vlen);
        return client_fail(c, SCRAM_ERR_SERVER_ERROR, c->server_error);
    }
    if (!read_attr(&m, 'v', NULL, &val, &vlen) || b64_decode(val, vlen, sig, sizeof sig) != SCRAM_KEY_LEN)
        return client_fail(c, SCRAM_ERR_MALFORMED, "Malformed server signature in server-final-message.");
    if (m.n != 0)
        return client_fail(c, SCRAM_ERR_MALFORMED, "Garbage found at the end of server-final-message.");
    if (CRYPTO_memcmp(sig, c->server_signature, SCRAM_KEY_LEN) != 0)
        return client_fail(c, SCRAM_ERR_SERVER_SIGNATURE, NULL);
    c->state = SCRAM_CLIENT_SUCCESS;
    return SCRAM_OK;
}

void scram_client_free(struct scram_client *c)
{
    free_secret(&c->password, c->password_len);
    free_secret(&c->client_first_bare, c->client_first_bare_len);
    if (c->out) {
        OPENSSL_cleanse(c->out, c->out_len);
        free(c->out);
    }
    OPENSSL_cleanse(c, sizeof *c);
}

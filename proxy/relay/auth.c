/* Authentication at the proxy (see auth.h). Client leg: SASL with
 * SCRAM-SHA-256(-PLUS) against the users file, the way Postgres does it,
 * including the mock exchange for unknown users. Upstream leg: SCRAM (with
 * -PLUS when offered over TLS) using the stored password or the ClientKey
 * recovered from the client's proof; md5 and cleartext with a stored
 * password. */
#include "auth.h"

#include <event2/buffer.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth_lookup.h"
#include "log.h"
#include "proto.h"
#include "sbuf.h"
#include "scram.h"
#include "relay.h"
#include "users.h"

#define AUTH_SASL_CONTINUE 11
#define AUTH_SASL_FINAL 12
#define AUTH_MD5 5
#define AUTH_CLEARTEXT 3
#define FAILURE_WINDOW_US 60000000ull
#define FAILURES_ALLOWED 10 /* per address and minute, before failures are slowed down */
#define FAILURE_DELAY_MS 1000 /* like Postgres's auth_delay: guessing gets slow, logging in does not */

struct auth_state {
    struct auth_peer peer;
    struct auth_failure failure;
    struct scram_server server;      /* the client's exchange with us */
    struct scram_client client;      /* our exchange with the upstream */
    char *password;                  /* stored password, if any (wiped) */
    size_t password_len;
    struct scram_verifier verifier;  /* copied: a reload may swap the table */
    int known_user;
    unsigned char *server_final;     /* SASLFinal for the client, sent after the upstream says Ok */
    size_t server_final_len;
};

void auth_free(struct auth_state *a)
{
    if (!a)
        return;
    scram_server_free(&a->server);
    scram_client_free(&a->client);
    if (a->password) {
        OPENSSL_cleanse(a->password, a->password_len);
        free(a->password);
    }
    scram_verifier_wipe(&a->verifier);
    free(a->server_final);
    free(a);
}

const struct auth_failure *auth_failure(const struct auth_state *a)
{
    return &a->failure;
}

/* Records why the exchange failed; the session closes with it. */
static enum auth_result failed(struct auth_state *a, int delay_ms, const char *sqlstate, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static enum auth_result failed(struct auth_state *a, int delay_ms, const char *sqlstate, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->failure.message, sizeof a->failure.message, fmt, ap);
    va_end(ap);
    snprintf(a->failure.sqlstate, sizeof a->failure.sqlstate, "%s", sqlstate);
    a->failure.delay_ms = delay_ms;
    return AUTH_FAILED;
}

/* R message: code plus payload, to the client. 0, or -1 when the buffer
 * could not take it (out of memory): the exchange then fails rather than
 * sending half a message. */
PGT_MUSTCHECK static int send_auth_request(struct auth_state *a, uint32_t code, const void *payload, size_t len)
{
    struct sbuf *client = a->peer.client;
    uint8_t head[9];
    head[0] = 'R';
    proto_put_u32(head + 1, (uint32_t)(8 + len));
    proto_put_u32(head + 5, code);
    if (evbuffer_add(client->out, head, sizeof head) != 0 || (len && evbuffer_add(client->out, payload, len) != 0))
        return -1;
    sbuf_flush(client);
    return 0;
}

/* A password message ('p') to the upstream; 0 or -1 as above. */
PGT_MUSTCHECK static int send_password_message(struct sbuf *upstream, const void *payload, size_t len)
{
    uint8_t head[5];
    head[0] = 'p';
    proto_put_u32(head + 1, (uint32_t)(4 + len));
    if (evbuffer_add(upstream->out, head, sizeof head) != 0 || evbuffer_add(upstream->out, payload, len) != 0)
        return -1;
    sbuf_flush(upstream);
    return 0;
}

static enum auth_result out_of_memory(struct auth_state *a)
{
    return failed(a, 0, SQLSTATE_CONNECTION_FAILURE, "out of memory");
}

/* The client address without its port: the unit of rate limiting. */
static void client_host(const struct auth_peer *p, char *out, size_t cap)
{
    snprintf(out, cap, "%s", p->client_addr);
    char *colon = strrchr(out, ':');
    if (colon && colon != out)
        *colon = '\0';
}

/* The slot counting failures of this address in the current minute. */
static struct auth_failures *failure_slot(const struct auth_peer *p)
{
    char host[64];
    client_host(p, host, sizeof host);
    struct relay *relay = p->relay;
    uint64_t now = relay_now_us(relay);
    struct auth_failures *oldest = &relay->auth_failures[0];
    for (size_t i = 0; i < sizeof relay->auth_failures / sizeof relay->auth_failures[0]; i++) {
        struct auth_failures *f = &relay->auth_failures[i];
        if (strcmp(f->addr, host) == 0) {
            if (now - f->window_start_us > FAILURE_WINDOW_US) {
                f->window_start_us = now;
                f->count = 0;
            }
            return f;
        }
        if (f->window_start_us < oldest->window_start_us)
            oldest = f;
    }
    snprintf(oldest->addr, sizeof oldest->addr, "%s", host);
    oldest->window_start_us = now;
    oldest->count = 0;
    return oldest;
}

/* Counts a failed login of this address and logs it: every one up to the
 * limit, then one in ten, so a brute force cannot flood the log. */
static void note_failure(const struct auth_peer *p, const char *why, const char *detail)
{
    struct auth_failures *f = failure_slot(p);
    f->count++;
    if (f->count <= FAILURES_ALLOWED || f->count % 10 == 0)
        log_info("session %llu (%s): authentication of user \"%s\" failed (%u from this address this minute): %s%s%s",
                 (unsigned long long)p->session_id, p->client_addr, p->user, f->count, why, detail ? ": " : "",
                 detail ? detail : "");
}

/* The client learns only what Postgres would tell it; the log gets why. */
static enum auth_result refuse_client(struct auth_state *a, enum scram_status st, const char *detail)
{
    const struct auth_peer *p = &a->peer;
    const char *why = st != SCRAM_ERR_AUTH_FAILED ? scram_status_message(st)
                      : a->known_user ? "wrong password" : "unknown user";
    note_failure(p, why, detail);
    /* Past the limit the answer comes late, so a correct password from the
     * same address (a NAT, a stale worker next to good ones) still logs in. */
    int delay = failure_slot(p)->count > FAILURES_ALLOWED ? FAILURE_DELAY_MS : 0;
    if (st == SCRAM_ERR_AUTH_FAILED)
        return failed(a, delay, scram_status_sqlstate(st), "password authentication failed for user \"%s\"", p->user);
    return failed(a, delay, scram_status_sqlstate(st), "%s", scram_status_message(st));
}

enum auth_result auth_begin_client(const struct auth_peer *peer, struct auth_state **out)
{
    struct relay *relay = peer->relay;
    struct auth_state *a = calloc(1, sizeof *a);
    *out = a;
    if (!a)
        return AUTH_FAILED;
    a->peer = *peer;
    a->peer.found = NULL; /* the caller's; copied into a->verifier below */
    const struct user_entry *u = !peer->looked_up && relay->users ? users_find(relay->users, peer->user) : NULL;
    const unsigned char *cb = peer->client_on_tls ? relay->cb_data : NULL;
    size_t cb_len = peer->client_on_tls ? relay->cb_len : 0;
    enum scram_status st;
    if (peer->found) {
        a->known_user = 1;
        a->verifier = *peer->found;
        st = scram_server_init(&a->server, &a->verifier, peer->client_on_tls, cb, cb_len);
    } else if (u) {
        a->known_user = 1;
        a->verifier = u->verifier;
        if (u->password) {
            a->password = malloc(u->password_len + 1);
            if (a->password) {
                memcpy(a->password, u->password, u->password_len + 1);
                a->password_len = u->password_len;
            }
        }
        st = scram_server_init(&a->server, &a->verifier, peer->client_on_tls, cb, cb_len);
    } else {
        const char *name = peer->user;
        st = scram_server_init_mock(&a->server, name, strlen(name), relay->mock_secret, sizeof relay->mock_secret,
                                    peer->client_on_tls, cb, cb_len);
    }
    if (st != SCRAM_OK)
        return refuse_client(a, st, NULL);
    unsigned char mechs[64];
    size_t n = scram_server_mechanisms(&a->server, mechs, sizeof mechs);
    if (send_auth_request(a, AUTH_SASL, mechs, n) != 0)
        return out_of_memory(a);
    return AUTH_CONTINUE;
}

/* Postgres names the binding type it does not support; so do we (printable
 * characters only: it comes from the client). */
static enum auth_result refuse_binding_type(struct auth_state *a, const uint8_t *body, size_t len)
{
    char type[33] = "";
    const uint8_t *end = memchr(body, '\0', len);
    const uint8_t *data = end && (size_t)(end - body) + 5 <= len ? end + 5 : NULL;
    size_t left = data ? len - (size_t)(data - body) : 0;
    if (data && left > 2 && data[0] == 'p' && data[1] == '=') {
        size_t n = 0;
        for (size_t i = 2; i < left && data[i] != ',' && n < sizeof type - 1; i++)
            type[n++] = data[i] >= 0x20 && data[i] < 0x7f ? (char)data[i] : '?';
        type[n] = '\0';
    }
    note_failure(&a->peer, scram_status_message(SCRAM_ERR_CB_TYPE), type);
    return failed(a, 0, scram_status_sqlstate(SCRAM_ERR_CB_TYPE), "unsupported SCRAM channel-binding type \"%s\"",
                  type);
}

enum auth_result auth_client_message(struct auth_state *a, const uint8_t *msg, uint32_t len)
{
    if (msg[0] != 'p')
        return failed(a, 0, SQLSTATE_PROTOCOL_VIOLATION, "expected SASL response, got message type %d", msg[0]);
    const unsigned char *out = NULL;
    size_t out_len = 0;
    enum scram_status st = a->server.state == SCRAM_SERVER_INIT
                               ? scram_server_handle_initial(&a->server, msg + 5, len - 5, &out, &out_len)
                               : scram_server_handle_response(&a->server, msg + 5, len - 5, &out, &out_len);
    if (st == SCRAM_ERR_CB_TYPE)
        return refuse_binding_type(a, msg + 5, len - 5);
    if (st != SCRAM_OK)
        return refuse_client(a, st, a->server.detail);
    if (a->server.state != SCRAM_SERVER_SUCCESS) {
        if (send_auth_request(a, AUTH_SASL_CONTINUE, out, out_len) != 0)
            return out_of_memory(a);
        return AUTH_CONTINUE;
    }
    a->server_final = malloc(out_len ? out_len : 1);
    if (!a->server_final)
        return out_of_memory(a);
    memcpy(a->server_final, out, out_len);
    a->server_final_len = out_len;
    return AUTH_DONE;
}

/* The ClientKey recovered from a client's proof logs in only where the
 * database stores the very verifier it was checked against: one made
 * with a fresh salt (`pgtandem passwd --verifier-only`) never will. The
 * client proved its password; what is wrong is the proxy's copy of the
 * verifier, and the client is told what to do about it (the operator may
 * only see this). A copy --auth-query answered is out of date: the role's
 * password changed after it was cached. It is forgotten, so the next login
 * reads the role's new verifier. */
static enum auth_result verifier_mismatch(struct auth_state *a)
{
    const char *user = a->peer.user;
    const char *why = scram_status_message(SCRAM_ERR_VERIFIER_MISMATCH);
    if (a->peer.looked_up) {
        auth_lookup_forget(a->peer.relay->auth_lookup, user);
        log_warn("session %llu: logging in upstream as \"%s\" failed: %s; the verifier --auth-query returned "
                 "for it was cached before the role's password changed; it is forgotten and read again at the "
                 "next login",
                 (unsigned long long)a->peer.session_id, user, why);
        return failed(a, 0, SQLSTATE_CONNECTION_FAILURE,
                      "the proxy cannot log in upstream as \"%s\": the SCRAM verifier --auth-query returned for it "
                      "is out of date (the role's password changed since it was cached); the proxy forgot it: "
                      "log in again with the role's current password",
                      user);
    }
    log_warn("session %llu: logging in upstream as \"%s\" failed: %s; store the role's own verifier "
             "(pgtandem passwd %s --from-db URI) or its password (pgtandem passwd %s)",
             (unsigned long long)a->peer.session_id, user, why, user, user);
    return failed(a, 0, SQLSTATE_CONNECTION_FAILURE,
                  "the proxy cannot log in upstream as \"%s\": its users file has a SCRAM verifier for it with "
                  "another salt than the database's; store the role's own verifier (pgtandem passwd %s --from-db "
                  "URI) or its password (pgtandem passwd %s)",
                  user, user, user);
}

static enum auth_result upstream_refused(struct auth_state *a, const char *why)
{
    log_warn("session %llu: logging in upstream as \"%s\" failed: %s", (unsigned long long)a->peer.session_id,
             a->peer.user, why);
    return failed(a, 0, "28P01", "password authentication failed for user \"%s\"", a->peer.user);
}

/* "md5" + md5(md5(password || user) as hex || salt) as hex, as libpq does.
 * 0 when there is no MD5 (a FIPS provider): nothing is sent then. */
static int md5_hex(const void *data, size_t len, char out[33])
{
    unsigned char digest[16];
    unsigned int dlen = 0;
    if (EVP_Digest(data, len, digest, &dlen, EVP_md5(), NULL) != 1 || dlen != sizeof digest)
        return 0;
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
    return 1;
}

static enum auth_result answer_md5(struct auth_state *a, struct sbuf *upstream, const uint8_t *salt)
{
    const char *user = a->peer.user;
    size_t ulen = strlen(user);
    char *buf = malloc(a->password_len + ulen + 36);
    if (!buf)
        return out_of_memory(a);
    char inner[33] = "", outer[36] = "";
    memcpy(buf, a->password, a->password_len);
    memcpy(buf + a->password_len, user, ulen);
    int ok = md5_hex(buf, a->password_len + ulen, inner);
    memcpy(buf, inner, 32);
    memcpy(buf + 32, salt, 4);
    ok = ok && md5_hex(buf, 36, outer + 3);
    memcpy(outer, "md5", 3);
    OPENSSL_cleanse(buf, a->password_len + ulen + 36);
    OPENSSL_cleanse(inner, sizeof inner);
    free(buf);
    if (!ok)
        return upstream_refused(a, "MD5 is not available to answer the upstream's md5 request");
    if (send_password_message(upstream, outer, sizeof outer) != 0) /* 35 chars + NUL */
        return out_of_memory(a);
    return AUTH_CONTINUE;
}

static enum auth_result start_upstream_scram(struct auth_state *a, struct sbuf *upstream, const uint8_t *mechs,
                                             size_t len)
{
    enum scram_status st = a->password ? scram_client_init_password(&a->client, a->password, a->password_len)
                                       : scram_client_init_client_key(&a->client, a->server.client_key, &a->verifier);
    if (st != SCRAM_OK)
        return upstream_refused(a, scram_status_message(st));
    unsigned char cb[SCRAM_MAX_CB_LEN];
    size_t cb_len = 0;
    X509 *cert = upstream->ssl ? SSL_get1_peer_certificate(upstream->ssl) : NULL;
    if (cert) {
        if (scram_tls_server_end_point(cert, cb, &cb_len) != SCRAM_OK)
            cb_len = 0;
        X509_free(cert);
    }
    const unsigned char *out;
    size_t out_len;
    st = scram_client_initial_response(&a->client, mechs, len, upstream->ssl != NULL, cb_len ? cb : NULL, cb_len,
                                       &out, &out_len);
    if (st != SCRAM_OK)
        return upstream_refused(a, scram_status_message(st));
    if (send_password_message(upstream, out, out_len) != 0)
        return out_of_memory(a);
    return AUTH_CONTINUE;
}

int auth_finish_client(struct auth_state *a)
{
    if (send_auth_request(a, AUTH_SASL_FINAL, a->server_final, a->server_final_len) != 0 ||
        send_auth_request(a, AUTH_OK, NULL, 0) != 0)
        return -1;
    return 0;
}

/* The upstream accepted us: now the client, if any, hears SASLFinal and Ok. */
static enum auth_result upstream_ok(struct auth_state *a)
{
    if (a->peer.client && auth_finish_client(a) != 0)
        return out_of_memory(a);
    log_debug("session %llu: user \"%s\" authenticated by the proxy and logged in upstream",
              (unsigned long long)a->peer.session_id, a->peer.user);
    return AUTH_DONE;
}

int auth_credentials_copy(const struct auth_state *a, struct auth_credentials *out)
{
    /* the exchange's own fields seen as credentials, then copied as any are */
    struct auth_credentials view = {.password = a->password, .password_len = a->password_len,
                                    .verifier = a->verifier};
    int r = a->password || scram_server_client_key(&a->server, view.client_key) == SCRAM_OK
                ? auth_credentials_dup(&view, out)
                : -1;
    OPENSSL_cleanse(&view, sizeof view);
    return r;
}

int auth_credentials_dup(const struct auth_credentials *c, struct auth_credentials *out)
{
    *out = *c;
    if (!c->password)
        return 0;
    out->password = malloc(c->password_len + 1);
    if (!out->password) {
        OPENSSL_cleanse(out, sizeof *out);
        return -1;
    }
    memcpy(out->password, c->password, c->password_len + 1);
    return 0;
}

void auth_credentials_wipe(struct auth_credentials *c)
{
    if (c->password) {
        OPENSSL_cleanse(c->password, c->password_len);
        free(c->password);
    }
    OPENSSL_cleanse(c, sizeof *c);
}

struct auth_state *auth_begin_upstream(struct relay *relay, const struct auth_credentials *c, const char *user,
                                       uint64_t conn_id)
{
    struct auth_state *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->peer = (struct auth_peer){relay, NULL, user, "pool", conn_id, 0, 0, NULL};
    a->known_user = 1;
    a->verifier = c->verifier;
    memcpy(a->server.client_key, c->client_key, sizeof a->server.client_key);
    if (c->password) {
        a->password = malloc(c->password_len + 1);
        if (!a->password) {
            free(a);
            return NULL;
        }
        memcpy(a->password, c->password, c->password_len + 1);
        a->password_len = c->password_len;
    }
    return a;
}

enum auth_result auth_upstream_message(struct auth_state *a, struct sbuf *upstream, const uint8_t *msg,
                                       uint32_t len)
{
    if (msg[0] != 'R' || len < 9)
        return AUTH_NOT_MINE;
    uint32_t code = proto_get_u32(msg + 5);
    const uint8_t *body = msg + 9;
    size_t blen = len - 9;
    enum scram_status st;
    const unsigned char *out;
    size_t out_len;
    switch (code) {
    case AUTH_OK:
        if (a->client.state != SCRAM_CLIENT_INIT && a->client.state != SCRAM_CLIENT_SUCCESS)
            return upstream_refused(a, "the server skipped the SCRAM proof");
        return upstream_ok(a);
    case AUTH_SASL:
        return start_upstream_scram(a, upstream, body, blen);
    case AUTH_SASL_CONTINUE:
        st = scram_client_handle_continue(&a->client, body, blen, &out, &out_len);
        if (st == SCRAM_ERR_VERIFIER_MISMATCH)
            return verifier_mismatch(a);
        if (st != SCRAM_OK)
            return upstream_refused(a, scram_status_message(st));
        if (send_password_message(upstream, out, out_len) != 0)
            return out_of_memory(a);
        return AUTH_CONTINUE;
    case AUTH_SASL_FINAL:
        st = scram_client_handle_final(&a->client, body, blen);
        return st == SCRAM_OK ? AUTH_CONTINUE : upstream_refused(a, scram_status_message(st));
    case AUTH_MD5:
        if (!a->password || blen < 4)
            return upstream_refused(a, "the upstream asks for md5 but the users file has no password for this user");
        return answer_md5(a, upstream, body);
    case AUTH_CLEARTEXT:
        if (!a->password)
            return upstream_refused(a, "the upstream asks for a password but the users file has only a verifier");
        if (send_password_message(upstream, a->password, a->password_len + 1) != 0)
            return out_of_memory(a);
        return AUTH_CONTINUE;
    default:
        return upstream_refused(a, "unsupported authentication method requested by the upstream");
    }
}

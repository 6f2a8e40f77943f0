/* Unit tests for the SCRAM-SHA-256 layer: known answers from a real
 * Postgres, whole exchanges between our server and client sides in memory
 * (password login, and the ClientKey technique used toward the upstream),
 * channel binding and downgrade refusal, tampering, malformed input. */
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdint.h>
#include <stdlib.h>

#include "scram.h"
#include "unit.h"

/* Known answers: Postgres 15 computed these with password_encryption =
 * 'scram-sha-256' (CREATE ROLE ... PASSWORD '<password>'; then SELECT
 * rolpassword FROM pg_authid) in the throwaway cluster of tests/pgcluster.sh. */
static const char *const PG_VERIFIER_1 =
    "SCRAM-SHA-256$4096:48WdZ5WSJqk88F9eN3HXxg==$quS16VXPjZtl+fVyG0xqriMwmcceeXRH4qqIeEkj81c=:"
    "6f+UCTZJJClaCfrZ2ahObQqj/2kbE5ZQznb0cF2styk=";
static const char *const PG_PASSWORD_1 = "pencil-tandem";
static const char *const PG_VERIFIER_2 =
    "SCRAM-SHA-256$4096:yyALlfnJJlUkAb0lVj4uKA==$X2i3punY/7+Od/O1sY7R6HC6xsmnT2ukBjcLzEOafs0=:"
    "UEytTu2exClpihzFYmN7PHCmsDAXhskQwRhB8H4YTU4=";
static const char *const PG_PASSWORD_2 = "apppass";

/* A step that must succeed for the check after it to mean anything. */
#define SETUP(call) do { \
    if ((call) != SCRAM_OK) { printf("FAIL setup (%s:%d: %s)\n", __FILE__, __LINE__, #call); unit_failures++; } \
} while (0)

static const unsigned char CB_PROXY[32] = "proxy certificate hash 32 bytes";
static const unsigned char CB_OTHER[32] = "a man in the middle's cert hash";

/* The pieces of one exchange, so tests can tamper between steps. */
struct exchange {
    struct scram_server relay;
    struct scram_client cli;
    enum scram_status st;  /* first failure, or SCRAM_OK */
    int failed_on_server;
};

static struct scram_verifier verifier_of(const char *text)
{
    struct scram_verifier v;
    memset(&v, 0, sizeof v);
    if (scram_verifier_parse(&v, text, strlen(text)) != SCRAM_OK)
        printf("could not parse %s\n", text);
    return v;
}

static void copy_msg(unsigned char *dst, size_t *dlen, const unsigned char *src, size_t len)
{
    memcpy(dst, src, len);
    *dlen = len;
}

enum tamper { T_NONE, T_NONCE, T_PROOF, T_SERVER_SIG };

/* Runs server <-> client; the server offers what its TLS state allows, the
 * client sees `mechs` (possibly stripped by an attacker). */
static void run(struct exchange *x, int server_tls, const unsigned char *server_cb, int client_tls,
                const unsigned char *client_cb, int strip_plus, enum tamper tamper)
{
    unsigned char mechs[64], buf[1024];
    size_t mlen, blen;
    const unsigned char *out;
    size_t out_len;
    x->st = SCRAM_OK;
    x->failed_on_server = 0;
    mlen = scram_server_mechanisms(&x->relay, mechs, sizeof mechs);
    if (strip_plus) {
        static const unsigned char plain[] = SCRAM_MECH "\0";
        memcpy(mechs, plain, sizeof plain);
        mlen = sizeof plain;
    }
    (void)server_tls;
    (void)server_cb;
    x->st = scram_client_initial_response(&x->cli, mechs, mlen, client_tls, client_cb, client_cb ? 32 : 0, &out,
                                          &out_len);
    if (x->st != SCRAM_OK)
        return;
    copy_msg(buf, &blen, out, out_len);
    if ((x->st = scram_server_handle_initial(&x->relay, buf, blen, &out, &out_len)) != SCRAM_OK) {
        x->failed_on_server = 1;
        return;
    }
    copy_msg(buf, &blen, out, out_len);
    if ((x->st = scram_client_handle_continue(&x->cli, buf, blen, &out, &out_len)) != SCRAM_OK)
        return;
    copy_msg(buf, &blen, out, out_len);
    if (tamper == T_NONCE)
        buf[blen - 50] ^= 1; /* inside r=, just before ",p=" + 44 chars of proof */
    if (tamper == T_PROOF)
        buf[blen - 3] = buf[blen - 3] == 'A' ? 'B' : 'A';
    if ((x->st = scram_server_handle_response(&x->relay, buf, blen, &out, &out_len)) != SCRAM_OK) {
        x->failed_on_server = 1;
        return;
    }
    copy_msg(buf, &blen, out, out_len);
    if (tamper == T_SERVER_SIG)
        buf[3] = buf[3] == 'A' ? 'B' : 'A';
    x->st = scram_client_handle_final(&x->cli, buf, blen);
}

static void free_exchange(struct exchange *x)
{
    scram_server_free(&x->relay);
    scram_client_free(&x->cli);
}

static void test_known_answers(void)
{
    struct scram_verifier v = verifier_of(PG_VERIFIER_1), d;
    char text[SCRAM_VERIFIER_MAX_LEN];
    CHECK("kat: Postgres verifier parses", v.iterations == 4096 && v.salt_len == 16);
    CHECK("kat: password matches Postgres verifier", scram_verifier_check_password(&v, PG_PASSWORD_1, 13));
    CHECK("kat: wrong password does not match", !scram_verifier_check_password(&v, "pencil-tandeM", 13));
    CHECK("kat: derive with Postgres's salt gives Postgres's keys",
          scram_verifier_derive(&d, PG_PASSWORD_1, 13, v.salt, v.salt_len, 4096) == SCRAM_OK &&
              scram_verifier_format(&d, text, sizeof text) > 0 && strcmp(text, PG_VERIFIER_1) == 0);
    struct scram_verifier v2 = verifier_of(PG_VERIFIER_2);
    CHECK("kat: second Postgres verifier", scram_verifier_check_password(&v2, PG_PASSWORD_2, 7));
}

static void test_verifier_format(void)
{
    struct scram_verifier v, back;
    char text[SCRAM_VERIFIER_MAX_LEN];
    CHECK("verifier: made from password", scram_verifier_from_password(&v, "s3cret", 6, 0) == SCRAM_OK);
    int n = scram_verifier_format(&v, text, sizeof text);
    CHECK("verifier: formats", n > 0 && strncmp(text, "SCRAM-SHA-256$4096:", 19) == 0);
    CHECK("verifier: round trip",
          scram_verifier_parse(&back, text, (size_t)n) == SCRAM_OK && memcmp(&back, &v, sizeof v) == 0);
    CHECK("verifier: password checks", scram_verifier_check_password(&v, "s3cret", 6));
    CHECK("verifier: small buffer refused", scram_verifier_format(&v, text, 20) == -1);
    struct scram_verifier v2;
    SETUP(scram_verifier_from_password(&v2, "s3cret", 6, 0));
    CHECK("verifier: salts are random", memcmp(v.salt, v2.salt, SCRAM_SALT_LEN) != 0);

    static const char *const bad[] = {
        "",
        "SCRAM-SHA-256$",
        "md5abcdef",
        "SCRAM-SHA-1$4096:48WdZ5WSJqk88F9eN3HXxg==$quS16VXPjZtl+fVyG0xqriMwmcceeXRH4qqIeEkj81c=:"
        "6f+UCTZJJClaCfrZ2ahObQqj/2kbE5ZQznb0cF2styk=",
        "SCRAM-SHA-256$0:48WdZ5WSJqk88F9eN3HXxg==$quS16VXPjZtl+fVyG0xqriMwmcceeXRH4qqIeEkj81c=:"
        "6f+UCTZJJClaCfrZ2ahObQqj/2kbE5ZQznb0cF2styk=",
        "SCRAM-SHA-256$-1:48WdZ5WSJqk88F9eN3HXxg==$quS16VXPjZtl+fVyG0xqriMwmcceeXRH4qqIeEkj81c=:"
        "6f+UCTZJJClaCfrZ2ahObQqj/2kbE5ZQznb0cF2styk=",
        "SCRAM-SHA-256$99999999999:48WdZ5WSJqk88F9eN3HXxg==$quS16VXPjZtl+fVyG0xqriMwmcceeXRH4qqIeEkj81c=:"
        "6f+UCTZJJClaCfrZ2ahObQqj/2kbE5ZQznb0cF2styk=",
        "SCRAM-SHA-256$4096:$quS16VXPjZtl+fVyG0xqriMwmcceeXRH4qqIeEkj81c=:6f+UCTZJJClaCfrZ2ahObQqj/2kbE5ZQznb0cF2styk=",
        "SCRAM-SHA-256$4096:48WdZ5WSJqk88F9eN3HXxg=$quS16VXPjZtl+fVyG0xqriMwmcceeXRH4qqIeEkj81c=:"
        "6f+UCTZJJClaCfrZ2ahObQqj/2kbE5ZQznb0cF2styk=",
        "SCRAM-SHA-256$4096:48WdZ5WSJqk88F9eN3HXxg==$quS16VXPjZtl+fVyG0xqriMwmcceeXRH4qqIeEkj8=:"
        "6f+UCTZJJClaCfrZ2ahObQqj/2kbE5ZQznb0cF2styk=",
        "SCRAM-SHA-256$4096:48WdZ5WSJqk88F9eN3HXxg==$quS16VXPjZtl+fVyG0xqriMwmcceeXRH4qqIeEkj81c=",
        "SCRAM-SHA-256$4096:48WdZ5WSJqk88F9eN3HXxg==$quS16VXPjZtl+fVyG0xqriMwmcceeXRH4qqIeEkj81c=:"
        "6f+UCTZJJClaCfrZ2ahObQqj/2kbE5ZQznb0cF2styk= ",
        "SCRAM-SHA-256$4096:48Wd*5WSJqk88F9eN3HXxg==$quS16VXPjZtl+fVyG0xqriMwmcceeXRH4qqIeEkj81c=:"
        "6f+UCTZJJClaCfrZ2ahObQqj/2kbE5ZQznb0cF2styk=",
    };
    int all = 1;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (scram_verifier_parse(&back, bad[i], strlen(bad[i])) != SCRAM_ERR_BAD_VERIFIER) {
            printf("accepted bad verifier #%zu\n", i);
            all = 0;
        }
    CHECK("verifier: malformed strings refused", all);
    /* A NUL inside the declared length is not a verifier either. */
    char withnul[256];
    size_t l = strlen(PG_VERIFIER_1);
    memcpy(withnul, PG_VERIFIER_1, l);
    withnul[30] = '\0';
    CHECK("verifier: embedded NUL refused", scram_verifier_parse(&back, withnul, l) == SCRAM_ERR_BAD_VERIFIER);
}

static void test_password_exchange(void)
{
    struct scram_verifier v = verifier_of(PG_VERIFIER_1);
    struct exchange x;
    unsigned char ck[SCRAM_KEY_LEN], h[SCRAM_KEY_LEN];
    unsigned int hl;

    SETUP(scram_server_init(&x.relay, &v, 0, NULL, 0));
    SETUP(scram_client_init_password(&x.cli, PG_PASSWORD_1, 13));
    run(&x, 0, NULL, 0, NULL, 0, T_NONE);
    CHECK("plain: exchange succeeds", x.st == SCRAM_OK && x.relay.state == SCRAM_SERVER_SUCCESS &&
                                          x.cli.state == SCRAM_CLIENT_SUCCESS);
    CHECK("plain: no channel binding without TLS", x.cli.cbind_flag == 'n' && !x.relay.cb_in_use);
    CHECK("plain: recovered ClientKey hashes to StoredKey",
          scram_server_client_key(&x.relay, ck) == SCRAM_OK && EVP_Digest(ck, 32, h, &hl, EVP_sha256(), NULL) &&
              memcmp(h, v.stored_key, 32) == 0);
    free_exchange(&x);

    SETUP(scram_server_init(&x.relay, &v, 0, NULL, 0));
    SETUP(scram_client_init_password(&x.cli, "pencil-tandeM", 13));
    run(&x, 0, NULL, 0, NULL, 0, T_NONE);
    CHECK("plain: wrong password refused", x.st == SCRAM_ERR_AUTH_FAILED && x.failed_on_server &&
                                               x.relay.state == SCRAM_SERVER_FAILED);
    CHECK("plain: no ClientKey after failure", scram_server_client_key(&x.relay, ck) == SCRAM_ERR_STATE);
    CHECK("plain: 28P01 for a wrong password", strcmp(scram_status_sqlstate(x.st), "28P01") == 0);
    free_exchange(&x);

    /* TLS client, server could not compute its certificate hash: no -PLUS
     * offered, so 'y' is honest and accepted. */
    SETUP(scram_server_init(&x.relay, &v, 1, NULL, 0));
    SETUP(scram_client_init_password(&x.cli, PG_PASSWORD_1, 13));
    run(&x, 1, NULL, 1, CB_PROXY, 0, T_NONE);
    CHECK("tls without binding data: 'y' accepted", x.st == SCRAM_OK && x.cli.cbind_flag == 'y');
    free_exchange(&x);
}

/* The proxy's path: client -> proxy with -PLUS, then proxy -> upstream with
 * the recovered ClientKey against the same verifier. */
static void test_plus_and_client_key(void)
{
    struct scram_verifier v = verifier_of(PG_VERIFIER_1);
    struct exchange x, up;
    unsigned char ck[SCRAM_KEY_LEN];

    SETUP(scram_server_init(&x.relay, &v, 1, CB_PROXY, 32));
    SETUP(scram_client_init_password(&x.cli, PG_PASSWORD_1, 13));
    run(&x, 1, CB_PROXY, 1, CB_PROXY, 0, T_NONE);
    CHECK("plus: exchange succeeds with channel binding",
          x.st == SCRAM_OK && x.relay.cb_in_use && x.cli.cbind_flag == 'p');
    CHECK("plus: ClientKey available", scram_server_client_key(&x.relay, ck) == SCRAM_OK);
    free_exchange(&x);

    SETUP(scram_server_init(&up.relay, &v, 1, CB_OTHER, 32)); /* the upstream, its own certificate */
    SETUP(scram_client_init_client_key(&up.cli, ck, &v));
    run(&up, 1, CB_OTHER, 1, CB_OTHER, 0, T_NONE);
    CHECK("client key: upstream login with recovered ClientKey (-PLUS)",
          up.st == SCRAM_OK && up.relay.state == SCRAM_SERVER_SUCCESS && up.cli.state == SCRAM_CLIENT_SUCCESS);
    free_exchange(&up);

    SETUP(scram_server_init(&up.relay, &v, 0, NULL, 0));
    SETUP(scram_client_init_client_key(&up.cli, ck, &v));
    run(&up, 0, NULL, 0, NULL, 0, T_NONE);
    CHECK("client key: upstream login without TLS", up.st == SCRAM_OK);
    free_exchange(&up);

    struct scram_verifier other;
    SETUP(scram_verifier_from_password(&other, PG_PASSWORD_1, 13, 0)); /* same password, other salt */
    SETUP(scram_server_init(&up.relay, &other, 0, NULL, 0));
    SETUP(scram_client_init_client_key(&up.cli, ck, &v));
    run(&up, 0, NULL, 0, NULL, 0, T_NONE);
    CHECK("client key: different upstream salt is a clear error",
          up.st == SCRAM_ERR_VERIFIER_MISMATCH && !up.failed_on_server && up.cli.detail != NULL);
    free_exchange(&up);

    SETUP(scram_server_init(&up.relay, &other, 0, NULL, 0));
    SETUP(scram_client_init_password(&up.cli, PG_PASSWORD_1, 13));
    run(&up, 0, NULL, 0, NULL, 0, T_NONE);
    CHECK("password client adapts to any upstream salt", up.st == SCRAM_OK);
    free_exchange(&up);

    SETUP(scram_server_init(&up.relay, &v, 1, CB_OTHER, 32));
    SETUP(scram_client_init_password(&up.cli, PG_PASSWORD_1, 13));
    scram_client_require_channel_binding(&up.cli, 1);
    run(&up, 1, CB_OTHER, 1, CB_OTHER, 1, T_NONE);
    CHECK("require channel binding: stripped -PLUS refused by the client", up.st == SCRAM_ERR_NO_MECHANISM);
    free_exchange(&up);
}

static void test_downgrade_and_binding(void)
{
    struct scram_verifier v = verifier_of(PG_VERIFIER_1);
    struct exchange x;

    /* An attacker removed -PLUS from the list: the client says 'y'. */
    SETUP(scram_server_init(&x.relay, &v, 1, CB_PROXY, 32));
    SETUP(scram_client_init_password(&x.cli, PG_PASSWORD_1, 13));
    run(&x, 1, CB_PROXY, 1, CB_PROXY, 1, T_NONE);
    CHECK("downgrade: 'y' over TLS refused", x.st == SCRAM_ERR_CB_NEGOTIATION && x.failed_on_server);
    CHECK("downgrade: Postgres's message and detail",
          strcmp(scram_status_message(x.st), "SCRAM channel binding negotiation error") == 0 &&
              strcmp(scram_status_sqlstate(x.st), "28000") == 0 && x.relay.detail &&
              strcmp(x.relay.detail, "The client supports SCRAM channel binding but thinks the server does not.  "
                                   "However, this server does support channel binding.") == 0);
    free_exchange(&x);

    /* The client binds to a different certificate: a man in the middle. */
    SETUP(scram_server_init(&x.relay, &v, 1, CB_PROXY, 32));
    SETUP(scram_client_init_password(&x.cli, PG_PASSWORD_1, 13));
    run(&x, 1, CB_PROXY, 1, CB_OTHER, 0, T_NONE);
    CHECK("binding: other certificate hash refused", x.st == SCRAM_ERR_CB_CHECK && x.failed_on_server);
    free_exchange(&x);

    /* Over TLS the server offers -PLUS but we have no hash of its
     * certificate (one we cannot hash, say a middlebox's): answering 'n'
     * would drop the binding unnoticed, so the client stops, as libpq does. */
    SETUP(scram_server_init(&x.relay, &v, 1, CB_PROXY, 32));
    SETUP(scram_client_init_password(&x.cli, PG_PASSWORD_1, 13));
    run(&x, 1, CB_PROXY, 1, NULL, 0, T_NONE);
    CHECK("binding: -PLUS offered over TLS without our hash: client stops",
          x.st == SCRAM_ERR_CERT && !x.failed_on_server && x.cli.state == SCRAM_CLIENT_FAILED);
    free_exchange(&x);

    /* 'p' over a connection without TLS, with either mechanism name. */
    const unsigned char *out;
    size_t out_len;
    static const char plus_body[] = SCRAM_MECH_PLUS "\0\0\0\0\x35p=tls-server-end-point,,n=,r=abcdefghijklmnopqrstuvwx";
    static const char plain_p[] = SCRAM_MECH "\0\0\0\0\x35p=tls-server-end-point,,n=,r=abcdefghijklmnopqrstuvwx";
    SETUP(scram_server_init(&x.relay, &v, 0, NULL, 0));
    CHECK("no tls: -PLUS mechanism refused",
          scram_server_handle_initial(&x.relay, (const unsigned char *)plus_body, sizeof plus_body - 1, &out,
                                      &out_len) == SCRAM_ERR_INVALID_MECHANISM);
    scram_server_free(&x.relay);
    SETUP(scram_server_init(&x.relay, &v, 0, NULL, 0));
    CHECK("no tls: 'p' flag with plain mechanism refused",
          scram_server_handle_initial(&x.relay, (const unsigned char *)plain_p, sizeof plain_p - 1, &out,
                                      &out_len) == SCRAM_ERR_MALFORMED);
    scram_server_free(&x.relay);
    SETUP(scram_server_init(&x.relay, &v, 1, CB_PROXY, 32));
    CHECK("tls: 'p' flag with plain mechanism refused",
          scram_server_handle_initial(&x.relay, (const unsigned char *)plain_p, sizeof plain_p - 1, &out,
                                      &out_len) == SCRAM_ERR_MALFORMED);
    scram_server_free(&x.relay);

    SETUP(scram_server_init(&x.relay, &v, 1, CB_PROXY, 32));
    unsigned char mechs[64];
    size_t ml = scram_server_mechanisms(&x.relay, mechs, sizeof mechs);
    CHECK("tls: offers -PLUS first", ml == sizeof SCRAM_MECH_PLUS + sizeof SCRAM_MECH + 1 &&
                                         memcmp(mechs, SCRAM_MECH_PLUS, sizeof SCRAM_MECH_PLUS) == 0);
    scram_server_free(&x.relay);
    SETUP(scram_server_init(&x.relay, &v, 0, CB_PROXY, 32));
    ml = scram_server_mechanisms(&x.relay, mechs, sizeof mechs);
    CHECK("no tls: offers only SCRAM-SHA-256", ml == sizeof SCRAM_MECH + 1);
    scram_server_free(&x.relay);

    /* A client that speaks PLUS over no TLS is a client bug; libpq refuses. */
    SETUP(scram_client_init_password(&x.cli, PG_PASSWORD_1, 13));
    static const unsigned char both[] = SCRAM_MECH_PLUS "\0" SCRAM_MECH "\0";
    CHECK("client: -PLUS offered without TLS refused",
          scram_client_initial_response(&x.cli, both, sizeof both, 0, NULL, 0, &out, &out_len) ==
              SCRAM_ERR_NO_MECHANISM);
    scram_client_free(&x.cli);
}

static void test_tampering(void)
{
    struct scram_verifier v = verifier_of(PG_VERIFIER_1);
    struct exchange x;

    SETUP(scram_server_init(&x.relay, &v, 1, CB_PROXY, 32));
    SETUP(scram_client_init_password(&x.cli, PG_PASSWORD_1, 13));
    run(&x, 1, CB_PROXY, 1, CB_PROXY, 0, T_NONCE);
    CHECK("tamper: final nonce refused", x.st == SCRAM_ERR_NONCE && x.failed_on_server);
    free_exchange(&x);

    SETUP(scram_server_init(&x.relay, &v, 1, CB_PROXY, 32));
    SETUP(scram_client_init_password(&x.cli, PG_PASSWORD_1, 13));
    run(&x, 1, CB_PROXY, 1, CB_PROXY, 0, T_PROOF);
    CHECK("tamper: proof refused", x.st == SCRAM_ERR_AUTH_FAILED && x.failed_on_server);
    free_exchange(&x);

    SETUP(scram_server_init(&x.relay, &v, 0, NULL, 0));
    SETUP(scram_client_init_password(&x.cli, PG_PASSWORD_1, 13));
    run(&x, 0, NULL, 0, NULL, 0, T_SERVER_SIG);
    CHECK("tamper: server signature refused by the client", x.st == SCRAM_ERR_SERVER_SIGNATURE &&
                                                                !x.failed_on_server);
    free_exchange(&x);

    /* A server that does not know the verifier cannot impersonate the
     * upstream: its signature does not verify. */
    struct scram_verifier fake;
    SETUP(scram_verifier_derive(&fake, "guess", 5, v.salt, v.salt_len, v.iterations));
    memcpy(fake.stored_key, v.stored_key, 32); /* accepts the proof, wrong ServerKey */
    SETUP(scram_server_init(&x.relay, &fake, 0, NULL, 0));
    SETUP(scram_client_init_password(&x.cli, PG_PASSWORD_1, 13));
    run(&x, 0, NULL, 0, NULL, 0, T_NONE);
    CHECK("impostor server refused", x.st == SCRAM_ERR_SERVER_SIGNATURE);
    free_exchange(&x);

    /* e= in server-final. */
    const unsigned char *out;
    size_t ol;
    static const unsigned char mechs[] = SCRAM_MECH "\0";
    SETUP(scram_server_init(&x.relay, &v, 0, NULL, 0));
    SETUP(scram_client_init_password(&x.cli, PG_PASSWORD_1, 13));
    SETUP(scram_client_initial_response(&x.cli, mechs, sizeof mechs, 0, NULL, 0, &out, &ol));
    SETUP(scram_server_handle_initial(&x.relay, out, ol, &out, &ol));
    SETUP(scram_client_handle_continue(&x.cli, out, ol, &out, &ol));
    CHECK("server error e= reported", scram_client_handle_final(&x.cli, (const unsigned char *)"e=invalid-proof",
                                                                15) == SCRAM_ERR_SERVER_ERROR &&
                                          strcmp(x.cli.server_error, "invalid-proof") == 0);
    free_exchange(&x);
}

static void test_mock_and_empty_initial(void)
{
    struct scram_server a, b;
    const unsigned char secret[16] = "process secret!";
    unsigned char mechs[64];
    SETUP(scram_server_init_mock(&a, "nobody", 6, secret, 16, 1, CB_PROXY, 32));
    SETUP(scram_server_init_mock(&b, "nobody", 6, secret, 16, 1, CB_PROXY, 32));
    CHECK("mock: same salt for the same user",
          memcmp(a.verifier.salt, b.verifier.salt, 16) == 0 && a.verifier.iterations == 4096);
    CHECK("mock: offers what a real user gets", scram_server_mechanisms(&a, mechs, sizeof mechs) > 15);
    struct exchange x;
    x.relay = a;
    SETUP(scram_client_init_password(&x.cli, "anything", 8));
    run(&x, 1, CB_PROXY, 1, CB_PROXY, 0, T_NONE);
    CHECK("mock: unknown user fails like a wrong password", x.st == SCRAM_ERR_AUTH_FAILED && x.failed_on_server);
    free_exchange(&x);
    scram_server_free(&b);

    /* SASLInitialResponse without data (length -1): empty challenge, then
     * the client-first arrives in a SASLResponse. */
    struct scram_verifier v = verifier_of(PG_VERIFIER_1);
    struct scram_server s;
    struct scram_client c;
    const unsigned char *out;
    size_t ol;
    static const unsigned char body[] = SCRAM_MECH "\0\xff\xff\xff\xff";
    static const unsigned char m[] = SCRAM_MECH "\0";
    SETUP(scram_server_init(&s, &v, 0, NULL, 0));
    SETUP(scram_client_init_password(&c, PG_PASSWORD_1, 13));
    int ok = scram_server_handle_initial(&s, body, sizeof body - 1, &out, &ol) == SCRAM_OK && ol == 0 &&
             s.state == SCRAM_SERVER_WAIT_FIRST;
    ok = ok && scram_client_initial_response(&c, m, sizeof m, 0, NULL, 0, &out, &ol) == SCRAM_OK;
    size_t skip = sizeof SCRAM_MECH + 4; /* the client-first inside the initial response */
    ok = ok && scram_server_handle_response(&s, out + skip, ol - skip, &out, &ol) == SCRAM_OK;
    ok = ok && scram_client_handle_continue(&c, out, ol, &out, &ol) == SCRAM_OK;
    ok = ok && scram_server_handle_response(&s, out, ol, &out, &ol) == SCRAM_OK;
    ok = ok && scram_client_handle_final(&c, out, ol) == SCRAM_OK;
    CHECK("empty initial response: exchange completes", ok);
    CHECK("finished server refuses more input",
          scram_server_handle_response(&s, (const unsigned char *)"x", 1, &out, &ol) == SCRAM_ERR_STATE);
    scram_server_free(&s);
    scram_client_free(&c);
}

/* Feeds a client-first-message (after the header) to a fresh server. */
static enum scram_status first_status(int tls, const char *mech, const char *msg, size_t len)
{
    struct scram_verifier v = verifier_of(PG_VERIFIER_1);
    struct scram_server s;
    unsigned char body[512];
    const unsigned char *out;
    size_t ol, ml = strlen(mech) + 1;
    memcpy(body, mech, ml);
    body[ml] = 0, body[ml + 1] = 0, body[ml + 2] = (unsigned char)(len >> 8), body[ml + 3] = (unsigned char)len;
    memcpy(body + ml + 4, msg, len);
    SETUP(scram_server_init(&s, &v, tls, CB_PROXY, 32));
    enum scram_status st = scram_server_handle_initial(&s, body, ml + 4 + len, &out, &ol);
    scram_server_free(&s);
    return st;
}

#define FIRST(tls, mech, lit) first_status(tls, mech, lit, sizeof lit - 1)

static void test_malformed_first(void)
{
    CHECK("first: valid", FIRST(0, SCRAM_MECH, "n,,n=,r=abc") == SCRAM_OK);
    CHECK("first: extensions ignored", FIRST(0, SCRAM_MECH, "n,,n=u,r=abc,x=1,y=2") == SCRAM_OK);
    CHECK("first: empty", FIRST(0, SCRAM_MECH, "") == SCRAM_ERR_MALFORMED);
    CHECK("first: NUL inside", FIRST(0, SCRAM_MECH, "n,,n=,r=a\0c") == SCRAM_ERR_MALFORMED);
    CHECK("first: bad flag", FIRST(0, SCRAM_MECH, "x,,n=,r=abc") == SCRAM_ERR_MALFORMED);
    CHECK("first: authzid", FIRST(0, SCRAM_MECH, "n,a=bob,n=,r=abc") == SCRAM_ERR_AUTHZID);
    CHECK("first: mandatory extension", FIRST(0, SCRAM_MECH, "n,,m=x,n=,r=abc") == SCRAM_ERR_EXTENSION);
    CHECK("first: missing nonce", FIRST(0, SCRAM_MECH, "n,,n=") == SCRAM_ERR_MALFORMED);
    CHECK("first: nonprintable nonce", FIRST(0, SCRAM_MECH, "n,,n=,r=a\x7f") == SCRAM_ERR_NONPRINTABLE_NONCE);
    CHECK("first: truncated", FIRST(0, SCRAM_MECH, "n") == SCRAM_ERR_MALFORMED);
    CHECK("first: unknown mechanism", FIRST(0, "SCRAM-SHA-1", "n,,n=,r=abc") == SCRAM_ERR_INVALID_MECHANISM);
    CHECK("first: other binding type", FIRST(1, SCRAM_MECH_PLUS, "p=tls-unique,,n=,r=abc") == SCRAM_ERR_CB_TYPE);
    CHECK("first: -PLUS without binding data", FIRST(1, SCRAM_MECH_PLUS, "n,,n=,r=abc") == SCRAM_ERR_MALFORMED);
    CHECK("first: -PLUS with 'y'", FIRST(1, SCRAM_MECH_PLUS, "y,,n=,r=abc") == SCRAM_ERR_MALFORMED);
    CHECK("first: 'y' without TLS accepted", FIRST(0, SCRAM_MECH, "y,,n=,r=abc") == SCRAM_OK);

    struct scram_verifier v = verifier_of(PG_VERIFIER_1);
    struct scram_server s;
    const unsigned char *out;
    size_t ol;
    static const unsigned char short_body[] = SCRAM_MECH "\0\0\0";
    static const unsigned char long_len[] = SCRAM_MECH "\0\0\0\0\x0an,,n=,r=a";
    SETUP(scram_server_init(&s, &v, 0, NULL, 0));
    CHECK("initial: truncated length", scram_server_handle_initial(&s, short_body, sizeof short_body - 1, &out,
                                                                   &ol) == SCRAM_ERR_MALFORMED);
    scram_server_free(&s);
    SETUP(scram_server_init(&s, &v, 0, NULL, 0));
    CHECK("initial: length beyond message", scram_server_handle_initial(&s, long_len, sizeof long_len - 1, &out,
                                                                        &ol) == SCRAM_ERR_MALFORMED);
    scram_server_free(&s);
}

/* Feeds a client-final to a server that has just sent its server-first. */
static enum scram_status final_status(const char *fmt_tail)
{
    struct scram_verifier v = verifier_of(PG_VERIFIER_1);
    struct scram_server s;
    static const unsigned char body[] = SCRAM_MECH "\0\0\0\0\x0bn,,n=,r=abc";
    const unsigned char *out;
    size_t ol;
    char msg[256];
    SETUP(scram_server_init(&s, &v, 0, NULL, 0));
    SETUP(scram_server_handle_initial(&s, body, sizeof body - 1, &out, &ol));
    int n = snprintf(msg, sizeof msg, "c=biws,r=abc%s%s", s.server_nonce, fmt_tail);
    enum scram_status st = scram_server_handle_response(&s, (const unsigned char *)msg, (size_t)n, &out, &ol);
    scram_server_free(&s);
    return st;
}

static void test_malformed_final(void)
{
    static const char proof[] = ",p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    CHECK("final: well formed, wrong proof", final_status(proof) == SCRAM_ERR_AUTH_FAILED);
    CHECK("final: extension before proof", final_status(",x=1,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=") ==
                                               SCRAM_ERR_AUTH_FAILED);
    CHECK("final: no proof", final_status("") == SCRAM_ERR_MALFORMED);
    CHECK("final: short proof", final_status(",p=AAAA") == SCRAM_ERR_MALFORMED);
    CHECK("final: garbage after proof",
          final_status(",p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=,q") == SCRAM_ERR_MALFORMED);
    CHECK("final: bad base64 proof",
          final_status(",p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA*=") == SCRAM_ERR_MALFORMED);

    struct scram_verifier v = verifier_of(PG_VERIFIER_1);
    struct scram_server s;
    static const unsigned char body[] = SCRAM_MECH "\0\0\0\0\x0bn,,n=,r=abc";
    const unsigned char *out;
    size_t ol;
    SETUP(scram_server_init(&s, &v, 0, NULL, 0));
    SETUP(scram_server_handle_initial(&s, body, sizeof body - 1, &out, &ol));
    CHECK("final: binding flag changed n -> y",
          scram_server_handle_response(&s, (const unsigned char *)"c=eSws,r=x,p=A", 14, &out, &ol) ==
              SCRAM_ERR_CB_UNEXPECTED);
    scram_server_free(&s);
}

/* A self-signed certificate signed with `md`, for channel binding data. */
static X509 *make_cert(const EVP_MD *md)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC, (const unsigned char *)"t", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_set_pubkey(x, key);
    X509_sign(x, key, md);
    EVP_PKEY_free(key);
    return x;
}

static int cb_matches(X509 *cert, const EVP_MD *expect_md)
{
    unsigned char cb[SCRAM_MAX_CB_LEN], want[EVP_MAX_MD_SIZE], *der = NULL;
    size_t n = 0;
    unsigned int wn = 0;
    int dl = i2d_X509(cert, &der);
    int ok = scram_tls_server_end_point(cert, cb, &n) == SCRAM_OK && dl > 0 &&
             EVP_Digest(der, (size_t)dl, want, &wn, expect_md, NULL) && n == wn && memcmp(cb, want, n) == 0;
    OPENSSL_free(der);
    return ok;
}

static void test_tls_server_end_point(void)
{
    X509 *c256 = make_cert(EVP_sha256()), *c384 = make_cert(EVP_sha384()), *c1 = make_cert(EVP_sha1());
    CHECK("cb: SHA-256 signature -> SHA-256 of DER", cb_matches(c256, EVP_sha256()));
    CHECK("cb: SHA-384 signature -> SHA-384 of DER", cb_matches(c384, EVP_sha384()));
    CHECK("cb: SHA-1 signature -> SHA-256 of DER", cb_matches(c1, EVP_sha256()));
    unsigned char cb[SCRAM_MAX_CB_LEN];
    size_t n;
    CHECK("cb: no certificate", scram_tls_server_end_point(NULL, cb, &n) == SCRAM_ERR_CERT);
    X509_free(c256);
    X509_free(c384);
    X509_free(c1);
}

int main(void)
{
    test_known_answers();
    test_verifier_format();
    test_password_exchange();
    test_plus_and_client_key();
    test_downgrade_and_binding();
    test_tampering();
    test_mock_and_empty_initial();
    test_malformed_first();
    test_malformed_final();
    test_tls_server_end_point();
    return UNIT_RESULT();
}

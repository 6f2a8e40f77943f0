/* libFuzzer target for the SCRAM parsers, which read untrusted bytes from
 * clients (SASLInitialResponse, client-first, client-final) and from the
 * upstream (mechanism list, server-first, server-final), and for verifier
 * strings from the users file. The first input byte picks the entry point
 * and whether the client side of the connection is on TLS. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "scram.h"

/* Refusals are the outcomes the fuzzer explores; the results of the
 * must-check calls are looked at and dropped. */
#define FUZZ_OUTCOME(call) do { if ((call) != 0) { } } while (0)

static const char VERIFIER[] =
    "SCRAM-SHA-256$4096:48WdZ5WSJqk88F9eN3HXxg==$quS16VXPjZtl+fVyG0xqriMwmcceeXRH4qqIeEkj81c=:"
    "6f+UCTZJJClaCfrZ2ahObQqj/2kbE5ZQznb0cF2styk=";
static const unsigned char CB[32] = "fuzzing certificate hash 32 byte";

static void fuzz_verifier(const uint8_t *data, size_t size)
{
    struct scram_verifier v;
    char text[SCRAM_VERIFIER_MAX_LEN];
    if (scram_verifier_parse(&v, (const char *)data, size) == SCRAM_OK)
        FUZZ_OUTCOME(scram_verifier_format(&v, text, sizeof text));
}

/* data is a whole SASLInitialResponse body. */
static void fuzz_initial(const struct scram_verifier *v, int tls, const uint8_t *data, size_t size)
{
    struct scram_server s;
    const unsigned char *out;
    size_t ol;
    if (scram_server_init(&s, v, tls, CB, sizeof CB) != SCRAM_OK)
        return;
    if (scram_server_handle_initial(&s, data, size, &out, &ol) == SCRAM_OK && s.state == SCRAM_SERVER_WAIT_FIRST)
        FUZZ_OUTCOME(scram_server_handle_response(&s, data, size, &out, &ol));
    scram_server_free(&s);
}

/* data is a client-final after a valid client-first; a '%' in the input is
 * replaced by the server nonce so the fuzzer can get past the nonce check. */
static void fuzz_final(const struct scram_verifier *v, int tls, const uint8_t *data, size_t size)
{
    static const unsigned char plain[] = SCRAM_MECH "\0\0\0\0\x0bn,,n=,r=abc";
    static const unsigned char plus[] = SCRAM_MECH_PLUS "\0\0\0\0\x20p=tls-server-end-point,,n=,r=abc";
    struct scram_server s;
    const unsigned char *out;
    size_t ol;
    unsigned char msg[4096 + 64];
    size_t n = 0;
    if (scram_server_init(&s, v, tls, CB, sizeof CB) != SCRAM_OK)
        return;
    if (tls ? scram_server_handle_initial(&s, plus, sizeof plus - 1, &out, &ol)
            : scram_server_handle_initial(&s, plain, sizeof plain - 1, &out, &ol))
        goto done;
    for (size_t i = 0; i < size && n + SCRAM_NONCE_B64_LEN < sizeof msg; i++) {
        if (data[i] == '%') {
            memcpy(msg + n, s.server_nonce, SCRAM_NONCE_B64_LEN);
            n += SCRAM_NONCE_B64_LEN;
        } else {
            msg[n++] = data[i];
        }
    }
    FUZZ_OUTCOME(scram_server_handle_response(&s, msg, n, &out, &ol));
done:
    scram_server_free(&s);
}

/* The upstream's side: data is the mechanism list, then (split at the
 * first 0xff byte) a server-first and a server-final. The client uses the
 * ClientKey technique so no PBKDF2 runs on fuzzed iteration counts. */
static void fuzz_client(const struct scram_verifier *v, int tls, const uint8_t *data, size_t size)
{
    static const unsigned char mechs[] = SCRAM_MECH_PLUS "\0" SCRAM_MECH "\0";
    unsigned char key[SCRAM_KEY_LEN] = {1};
    struct scram_client c;
    const unsigned char *out;
    size_t ol;
    const uint8_t *split = memchr(data, 0xff, size);
    if (scram_client_init_client_key(&c, key, v) != SCRAM_OK)
        return;
    if (!split) {
        FUZZ_OUTCOME(scram_client_initial_response(&c, data, size, tls, CB, sizeof CB, &out, &ol));
        goto done;
    }
    if (scram_client_initial_response(&c, mechs, sizeof mechs, tls, CB, sizeof CB, &out, &ol) != SCRAM_OK)
        goto done;
    /* A server-first with our nonce, then the fuzzed server-final; or the
     * fuzzed server-first when the input starts with 'r'. */
    char first[256];
    int fl = snprintf(first, sizeof first, "r=%sXYZ,s=48WdZ5WSJqk88F9eN3HXxg==,i=4096", c.client_nonce);
    if (data[0] == 'r') {
        FUZZ_OUTCOME(scram_client_handle_continue(&c, data, (size_t)(split - data), &out, &ol));
        goto done;
    }
    if (scram_client_handle_continue(&c, (const unsigned char *)first, (size_t)fl, &out, &ol) == SCRAM_OK)
        FUZZ_OUTCOME(scram_client_handle_final(&c, split + 1, size - (size_t)(split - data) - 1));
done:
    scram_client_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct scram_verifier v;
    if (size < 1 || scram_verifier_parse(&v, VERIFIER, sizeof VERIFIER - 1) != SCRAM_OK)
        return 0;
    int mode = data[0] % 4, tls = (data[0] >> 2) & 1;
    data++;
    size--;
    if (mode == 0)
        fuzz_verifier(data, size);
    else if (mode == 1)
        fuzz_initial(&v, tls, data, size);
    else if (mode == 2)
        fuzz_final(&v, tls, data, size);
    else
        fuzz_client(&v, tls, data, size);
    return 0;
}

/* Authentication at the proxy (auth mode "scram"): the proxy verifies the
 * client's SCRAM exchange against the users file, then logs in to the
 * upstream itself, so TLS clients with libpq's defaults (and channel
 * binding to the proxy's certificate) work in front of a TLS upstream. */
#ifndef PGTANDEM_AUTH_H
#define PGTANDEM_AUTH_H

#include <stdint.h>

#include "compiler.h"
#include "scram.h"
struct relay;
struct sbuf;
struct auth_state;

enum auth_result { AUTH_CONTINUE, AUTH_DONE, AUTH_FAILED, AUTH_NOT_MINE };

/* What the exchange needs of the session it runs for. The strings and the
 * client buffer belong to the session and outlive the exchange. */
struct auth_peer {
    struct relay *relay;
    struct sbuf *client;       /* Authentication* messages to the client */
    const char *user;
    const char *client_addr;
    uint64_t session_id;
    int client_on_tls;
    /* --auth-query answered: the role's verifier, or NULL for the mock
     * exchange of a missing role; not looked up: the users file */
    int looked_up;
    const struct scram_verifier *found;
};

/* Why an exchange failed: what the client is told, and how late (rate
 * limiting answers repeated failures after a delay). The session closes. */
struct auth_failure {
    char sqlstate[6];
    char message[320];
    int delay_ms;
};

/* Looks the user up and sends AuthenticationSASL. *out is the exchange's
 * state (NULL only when out of memory); the session frees it. */
PGT_MUSTCHECK enum auth_result auth_begin_client(const struct auth_peer *peer, struct auth_state **out);
/* One complete client message (type 'p') while the proxy authenticates.
 * AUTH_DONE: the client proved its password; connect upstream next. */
PGT_MUSTCHECK enum auth_result auth_client_message(struct auth_state *a, const uint8_t *msg, uint32_t len);
/* One complete upstream 'R' message while the proxy logs in upstream over
 * `upstream`. AUTH_DONE: AuthenticationOk arrived and the client was told. */
PGT_MUSTCHECK enum auth_result auth_upstream_message(struct auth_state *a, struct sbuf *upstream, const uint8_t *msg,
                                       uint32_t len);
/* After AUTH_FAILED: why (never NULL for a state auth_begin_client made). */
const struct auth_failure *auth_failure(const struct auth_state *a);
void auth_free(struct auth_state *a);

/* What the proxy logs in upstream with once a client has proved its
 * password: the users file's password, or the ClientKey recovered from the
 * client's proof and the verifier it was checked against. A transaction
 * pool keeps it to log in server connections no client waits behind. */
struct auth_credentials {
    char *password;                   /* NULL: use client_key (wiped on free) */
    size_t password_len;
    unsigned char client_key[SCRAM_KEY_LEN];
    struct scram_verifier verifier;
};
/* After the client's exchange returned AUTH_DONE. 0, or -1 out of memory. */
PGT_MUSTCHECK int auth_credentials_copy(const struct auth_state *a, struct auth_credentials *out);
/* A copy of `c` (its password allocated anew). 0, or -1 out of memory. */
PGT_MUSTCHECK int auth_credentials_dup(const struct auth_credentials *c, struct auth_credentials *out);
void auth_credentials_wipe(struct auth_credentials *c);
/* An exchange that only logs in upstream, as `user`, with no client behind
 * it (a pool's server connection): feed it the upstream's 'R' messages with
 * auth_upstream_message; AUTH_DONE tells no one. NULL when out of memory. */
struct auth_state *auth_begin_upstream(struct relay *relay, const struct auth_credentials *c, const char *user,
                                       uint64_t conn_id);
/* Transaction pooling: the client hears SASLFinal and AuthenticationOk now,
 * without an upstream login of its own. 0, or -1 out of memory. */
PGT_MUSTCHECK int auth_finish_client(struct auth_state *a);

#endif

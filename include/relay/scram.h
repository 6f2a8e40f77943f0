/* SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it: verifiers in
 * pg_authid's format, the server side that authenticates a client of the
 * proxy, the client side that logs in to the upstream (with a password or
 * with the ClientKey recovered from the client's proof), and
 * tls-server-end-point channel binding data (RFC 5929).
 *
 * Everything here works on bytes with explicit lengths: SCRAM messages come
 * from the network and are never assumed to be NUL-terminated. Functions
 * return an enum scram_status; on failure the state object records a detail
 * string (static, never containing secrets) that mirrors Postgres's errdetail.
 *
 * Passwords go through SASLprep (saslprep.h) before hashing, as in
 * Postgres and libpq: "IX-\u2168" and "IX-IX" are the same password, and one
 * that SASLprep refuses (control or prohibited characters, bad bidi, not
 * UTF-8) is hashed as its raw bytes, as Postgres does. */
#ifndef PGTANDEM_SCRAM_H
#define PGTANDEM_SCRAM_H

#include <openssl/x509.h>
#include <stddef.h>

#include "compiler.h"

#define SCRAM_KEY_LEN 32                /* SHA-256 output */
#define SCRAM_SALT_LEN 16               /* salt of verifiers we create */
#define SCRAM_MAX_SALT_LEN 64           /* largest salt we accept */
#define SCRAM_DEFAULT_ITERATIONS 4096
#define SCRAM_RAW_NONCE_LEN 18
#define SCRAM_NONCE_B64_LEN 24          /* base64 of SCRAM_RAW_NONCE_LEN bytes */
#define SCRAM_MAX_CB_LEN 64             /* EVP_MAX_MD_SIZE: largest digest */
#define SCRAM_MAX_MESSAGE_LEN 65535     /* Postgres's PG_MAX_AUTH_TOKEN_LENGTH */
#define SCRAM_VERIFIER_MAX_LEN 256      /* formatted verifier, with room */

#define SCRAM_MECH "SCRAM-SHA-256"
#define SCRAM_MECH_PLUS "SCRAM-SHA-256-PLUS"
#define SCRAM_CB_TYPE "tls-server-end-point"

enum scram_status {
    SCRAM_OK = 0,
    SCRAM_ERR_INTERNAL,          /* RNG, digest or allocation failure */
    SCRAM_ERR_STATE,             /* call out of order */
    SCRAM_ERR_MALFORMED,         /* syntax error in a SCRAM message */
    SCRAM_ERR_INVALID_MECHANISM, /* mechanism not offered / not SCRAM */
    SCRAM_ERR_CB_NEGOTIATION,    /* 'y' while we offered -PLUS: downgrade */
    SCRAM_ERR_CB_TYPE,           /* channel binding type other than ours */
    SCRAM_ERR_CB_CHECK,          /* c= does not match our certificate */
    SCRAM_ERR_CB_UNEXPECTED,     /* c= does not repeat the gs2 header */
    SCRAM_ERR_AUTHZID,           /* authorization identity: unsupported */
    SCRAM_ERR_EXTENSION,         /* mandatory extension m=: unsupported */
    SCRAM_ERR_NONPRINTABLE_NONCE,
    SCRAM_ERR_NONCE,             /* final nonce differs from ours */
    SCRAM_ERR_AUTH_FAILED,       /* wrong proof, or unknown user (mock) */
    /* client side (toward the upstream) */
    SCRAM_ERR_NO_MECHANISM,      /* nothing usable offered by the server */
    SCRAM_ERR_SERVER_ERROR,      /* server-final carried e=... */
    SCRAM_ERR_SERVER_SIGNATURE,  /* server could not prove it knows the key */
    SCRAM_ERR_VERIFIER_MISMATCH, /* upstream salt/iterations != verifier's */
    /* verifiers and certificates */
    SCRAM_ERR_BAD_VERIFIER,
    SCRAM_ERR_CERT,
};

/* Postgres's message text and SQLSTATE for a status, for ErrorResponse.
 * SCRAM_ERR_AUTH_FAILED maps to the text `password authentication failed
 * for user "%s"` which the caller formats with the startup user name. */
const char *scram_status_message(enum scram_status st);
const char *scram_status_sqlstate(enum scram_status st);

/* ---- verifiers: SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey> ---- */

struct scram_verifier {
    int iterations;
    size_t salt_len;
    unsigned char salt[SCRAM_MAX_SALT_LEN];
    unsigned char stored_key[SCRAM_KEY_LEN];
    unsigned char server_key[SCRAM_KEY_LEN];
};

PGT_MUSTCHECK enum scram_status scram_verifier_parse(struct scram_verifier *v, const char *text, size_t len);
/* Writes the NUL-terminated text into out; returns its length, or -1 when
 * cap is too small. */
PGT_MUSTCHECK int scram_verifier_format(const struct scram_verifier *v, char *out, size_t cap);
/* Derives a verifier from a password with the given salt (known answers). */
PGT_MUSTCHECK enum scram_status scram_verifier_derive(struct scram_verifier *v, const char *password, size_t pw_len,
                                        const unsigned char *salt, size_t salt_len, int iterations);
/* A fresh verifier: random 16-byte salt; iterations <= 0 means 4096. */
PGT_MUSTCHECK enum scram_status scram_verifier_from_password(struct scram_verifier *v, const char *password, size_t pw_len,
                                               int iterations);
/* 1 when the password matches the verifier (constant-time compare). */
PGT_MUSTCHECK int scram_verifier_check_password(const struct scram_verifier *v, const char *password, size_t pw_len);
void scram_verifier_wipe(struct scram_verifier *v);

/* ---- tls-server-end-point (RFC 5929 section 4.1) ---- */

/* Hash of the DER certificate with its signature's digest (SHA-256 when
 * that is MD5 or SHA-1). out must hold SCRAM_MAX_CB_LEN bytes. */
PGT_MUSTCHECK enum scram_status scram_tls_server_end_point(X509 *cert, unsigned char *out, size_t *out_len);

/* ---- server side: the proxy authenticates a client ---- */

enum scram_server_state {
    SCRAM_SERVER_INIT,        /* expecting SASLInitialResponse */
    SCRAM_SERVER_WAIT_FIRST,  /* initial response had no data: client-first comes in a SASLResponse */
    SCRAM_SERVER_SENT_FIRST,  /* server-first sent: expecting client-final */
    SCRAM_SERVER_SUCCESS,     /* server-final produced: send SASLFinal + AuthenticationOk */
    SCRAM_SERVER_FAILED,      /* terminal: send the status's ErrorResponse */
};

struct scram_server {
    enum scram_server_state state;
    struct scram_verifier verifier;
    int doomed;               /* mock exchange for an unknown user: always fails */
    int offer_plus;           /* client on TLS and we have channel binding data */
    int client_on_tls;
    int cb_in_use;            /* client chose SCRAM-SHA-256-PLUS */
    char cbind_flag;          /* 'n', 'y' or 'p' */
    size_t cb_len;
    unsigned char cb_data[SCRAM_MAX_CB_LEN];
    char *client_first_bare;  /* owned; for the AuthMessage */
    size_t client_first_bare_len;
    char *client_nonce;       /* owned */
    size_t client_nonce_len;
    char server_nonce[SCRAM_NONCE_B64_LEN + 1];
    char *server_first;       /* owned; also the SASLContinue payload */
    size_t server_first_len;
    char *server_final;       /* owned; the SASLFinal payload */
    size_t server_final_len;
    unsigned char client_key[SCRAM_KEY_LEN]; /* recovered on success */
    const char *detail;       /* Postgres-style errdetail of the last failure, or NULL */
};

/* cb_data: tls-server-end-point of the certificate the client sees (may be
 * NULL/0 when not on TLS or unavailable; then -PLUS is not offered). */
PGT_MUSTCHECK enum scram_status scram_server_init(struct scram_server *s, const struct scram_verifier *v, int client_on_tls,
                                    const unsigned char *cb_data, size_t cb_len);
/* For an unknown user: runs the whole exchange, as Postgres does, with a salt
 * derived from the user name and a process secret so that probing cannot tell
 * unknown users from wrong passwords; the proof always fails. */
PGT_MUSTCHECK enum scram_status scram_server_init_mock(struct scram_server *s, const char *user, size_t user_len,
                                         const unsigned char *secret, size_t secret_len, int client_on_tls,
                                         const unsigned char *cb_data, size_t cb_len);
/* The AuthenticationSASL payload after the Int32 10: NUL-terminated names
 * ("SCRAM-SHA-256-PLUS" first when offered) and a final NUL. Returns the
 * length written, or 0 when cap is too small. */
size_t scram_server_mechanisms(const struct scram_server *s, unsigned char *out, size_t cap);
/* body: SASLInitialResponse payload (mechanism NUL, Int32 length or -1,
 * client-first-message). *out: server-first-message for
 * AuthenticationSASLContinue (empty when the client sent no data), owned by s. */
PGT_MUSTCHECK enum scram_status scram_server_handle_initial(struct scram_server *s, const unsigned char *body, size_t len,
                                              const unsigned char **out, size_t *out_len);
/* data: SASLResponse payload. In SCRAM_SERVER_WAIT_FIRST it is the
 * client-first (answer with SASLContinue(*out)); in SENT_FIRST the
 * client-final: on SCRAM_OK the state is SUCCESS and *out the server-final
 * for AuthenticationSASLFinal. */
PGT_MUSTCHECK enum scram_status scram_server_handle_response(struct scram_server *s, const unsigned char *data, size_t len,
                                               const unsigned char **out, size_t *out_len);
/* The client's ClientKey, recovered from a verified proof (SUCCESS only). */
PGT_MUSTCHECK enum scram_status scram_server_client_key(const struct scram_server *s, unsigned char out[SCRAM_KEY_LEN]);
/* Wipes keys and frees owned buffers; s may be reused after init. */
void scram_server_free(struct scram_server *s);

/* ---- client side: the proxy logs in to the upstream ---- */

enum scram_client_state {
    SCRAM_CLIENT_INIT,        /* expecting AuthenticationSASL */
    SCRAM_CLIENT_SENT_FIRST,  /* expecting AuthenticationSASLContinue */
    SCRAM_CLIENT_SENT_FINAL,  /* expecting AuthenticationSASLFinal */
    SCRAM_CLIENT_SUCCESS,     /* server proved itself: AuthenticationOk may follow */
    SCRAM_CLIENT_FAILED,
};

struct scram_client {
    enum scram_client_state state;
    int use_client_key;       /* 0: password; 1: recovered ClientKey + verifier */
    char *password;           /* owned, wiped on free */
    size_t password_len;
    unsigned char client_key[SCRAM_KEY_LEN];
    struct scram_verifier verifier;  /* salt, iterations, ServerKey for ClientKey mode */
    int require_cb;           /* fail unless -PLUS is used */
    int cb_in_use;
    char cbind_flag;
    size_t cb_len;
    unsigned char cb_data[SCRAM_MAX_CB_LEN];
    char client_nonce[SCRAM_NONCE_B64_LEN + 1];
    char *client_first_bare;  /* owned */
    size_t client_first_bare_len;
    unsigned char server_signature[SCRAM_KEY_LEN]; /* expected in server-final */
    unsigned char *out;       /* owned; last message produced */
    size_t out_len;
    char server_error[64];    /* e= value of a server-final error, sanitised */
    const char *detail;
};

PGT_MUSTCHECK enum scram_status scram_client_init_password(struct scram_client *c, const char *password, size_t pw_len);
/* The ClientKey technique: proves knowledge of the password to an upstream
 * that stores the same verifier (same salt and iteration count). */
PGT_MUSTCHECK enum scram_status scram_client_init_client_key(struct scram_client *c, const unsigned char client_key[SCRAM_KEY_LEN],
                                               const struct scram_verifier *v);
/* Like libpq's channel_binding=require. */
void scram_client_require_channel_binding(struct scram_client *c, int require);
/* mechs: AuthenticationSASL payload after the Int32 10. on_tls / cb_data:
 * the upstream connection and the tls-server-end-point of the upstream's
 * certificate. *out: SASLInitialResponse payload, owned by c. */
PGT_MUSTCHECK enum scram_status scram_client_initial_response(struct scram_client *c, const unsigned char *mechs, size_t mechs_len,
                                                int on_tls, const unsigned char *cb_data, size_t cb_len,
                                                const unsigned char **out, size_t *out_len);
/* data: AuthenticationSASLContinue payload (server-first-message).
 * *out: SASLResponse payload (client-final-message), owned by c. */
PGT_MUSTCHECK enum scram_status scram_client_handle_continue(struct scram_client *c, const unsigned char *data, size_t len,
                                               const unsigned char **out, size_t *out_len);
/* data: AuthenticationSASLFinal payload (server-final-message). */
PGT_MUSTCHECK enum scram_status scram_client_handle_final(struct scram_client *c, const unsigned char *data, size_t len);
void scram_client_free(struct scram_client *c);

#endif

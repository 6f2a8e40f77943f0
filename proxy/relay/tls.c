/* TLS contexts for both legs. The client leg terminates TLS with our own
 * certificate; the upstream leg always sends SNI, because Neon routes on it
 * (PgBouncer sends it only in verify-full, which breaks Neon).
 *
 * Every OpenSSL call whose failure would weaken a connection (protocol
 * floor, certificates, CA, SNI, the name verify-full checks) is checked, and
 * a failure refuses the connection or the start: nothing silently falls back
 * to a weaker mode (verify-full to verify-ca, say). */
#include "tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

#include "file_read.h"
#include "sbuf.h"

/* OpenSSL reads these files itself, to their end: a path that names a
 * device (/dev/zero) would be read forever. Certificates, keys and CA
 * bundles (a few hundred KB for a full bundle) are regular files well
 * under this. */
#define TLS_FILE_MAX (16u << 20)

static void describe_openssl_error(const char *what, char *err, size_t errlen)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "unknown error";
    if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    snprintf(err, errlen, "%s: %s", what, buf);
    ERR_clear_error();
}

SSL_CTX *tls_client_side_ctx(const struct config *cfg, char *err, size_t errlen)
{
    if (!cfg->tls_cert)
        return NULL;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        describe_openssl_error("TLS context", err, errlen);
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_read_ahead(ctx, 1); /* one read() per record, not two */
    /* An idle client keeps no record buffers (a read and a write buffer
     * of some 17 KB each, otherwise held for the life of the connection):
     * OpenSSL takes them back when they are empty, as PgBouncer's TLS
     * clients cost only their SSL object while idle. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_max_send_fragment(ctx, SBUF_TLS_RECORD_PAYLOAD); /* records as Postgres writes them (sbuf.h) */
    char what[600];
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        describe_openssl_error("TLS: cannot require TLS 1.2 or later", err, errlen);
    } else if (file_check(cfg->tls_cert, "TLS certificate", TLS_FILE_MAX, err, errlen) != 0 ||
               file_check(cfg->tls_key, "TLS key", TLS_FILE_MAX, err, errlen) != 0) {
        /* err says which */
    } else if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1) {
        snprintf(what, sizeof what, "TLS certificate %s", cfg->tls_cert);
        describe_openssl_error(what, err, errlen);
    } else if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) != 1) {
        snprintf(what, sizeof what, "TLS key %s", cfg->tls_key);
        describe_openssl_error(what, err, errlen);
    } else if (SSL_CTX_check_private_key(ctx) != 1) {
        describe_openssl_error("TLS key does not match the certificate", err, errlen);
    } else {
        return ctx;
    }
    SSL_CTX_free(ctx);
    return NULL;
}

SSL_CTX *tls_upstream_ctx(const struct config *cfg, char *err, size_t errlen)
{
    if (cfg->upstream_tls == UPSTREAM_TLS_DISABLE)
        return NULL;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        describe_openssl_error("TLS context", err, errlen);
        return NULL;
    }
    SSL_CTX_set_read_ahead(ctx, 1); /* one read() per record, not two */
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        describe_openssl_error("upstream TLS: cannot require TLS 1.2 or later", err, errlen);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (cfg->upstream_tls == UPSTREAM_TLS_REQUIRE) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        if (cfg->upstream_ca && file_check(cfg->upstream_ca, "upstream CA", TLS_FILE_MAX, err, errlen) != 0) {
            SSL_CTX_free(ctx);
            return NULL;
        }
        int loaded = cfg->upstream_ca ? SSL_CTX_load_verify_locations(ctx, cfg->upstream_ca, NULL)
                                      : SSL_CTX_set_default_verify_paths(ctx);
        if (loaded != 1) {
            char what[600];
            snprintf(what, sizeof what, "upstream CA %s", cfg->upstream_ca ? cfg->upstream_ca : "(system store)");
            describe_openssl_error(what, err, errlen);
            SSL_CTX_free(ctx);
            return NULL;
        }
    }
    /* A host name that cannot be sent as SNI or checked in verify-full
     * stops the start here rather than every connection later. */
    SSL *probe = tls_upstream_ssl(ctx, cfg, err, errlen);
    if (!probe) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_free(probe);
    return ctx;
}

static int is_ip_literal(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* verify-full: the certificate must name this host (or IP address). The
 * setters report most failures, but SSL_set1_host("") succeeds and checks
 * nothing, so what was armed is read back: no name armed, no connection. */
static int arm_host_check(SSL *ssl, const char *host, char *err, size_t errlen)
{
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    if (!host[0]) {
        snprintf(err, errlen, "upstream TLS: sslmode verify-full needs a host name to verify");
        return -1;
    }
    if (is_ip_literal(host)) {
        char *armed = NULL;
        if (X509_VERIFY_PARAM_set1_ip_asc(param, host) != 1 || !(armed = X509_VERIFY_PARAM_get1_ip_asc(param))) {
            snprintf(err, errlen, "upstream TLS: cannot verify the certificate against the IP address \"%s\"", host);
            ERR_clear_error();
            return -1;
        }
        OPENSSL_free(armed);
        return 0;
    }
    const char *armed = NULL;
    if (SSL_set1_host(ssl, host) != 1 || !(armed = X509_VERIFY_PARAM_get0_host(param, 0)) || strcmp(armed, host) != 0) {
        snprintf(err, errlen, "upstream TLS: cannot verify the certificate against the host name \"%s\"", host);
        ERR_clear_error();
        return -1;
    }
    return 0;
}

SSL *tls_upstream_ssl(SSL_CTX *ctx, const struct config *cfg, char *err, size_t errlen)
{
    SSL *ssl = SSL_new(ctx);
    if (!ssl) {
        describe_openssl_error("upstream TLS", err, errlen);
        return NULL;
    }
    const char *host = cfg->upstream_host;
    /* Neon routes on SNI: a name that cannot be sent (longer than 255
     * bytes) would reach the wrong place or none. */
    if (!is_ip_literal(host) && host[0] && SSL_set_tlsext_host_name(ssl, host) != 1) {
        snprintf(err, errlen, "upstream TLS: cannot send the host name \"%.64s%s\" as SNI", host,
                 strlen(host) > 64 ? "..." : "");
        ERR_clear_error();
        SSL_free(ssl);
        return NULL;
    }
    if (cfg->upstream_tls == UPSTREAM_TLS_VERIFY_FULL && arm_host_check(ssl, host, err, errlen) != 0) {
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

/* Unit tests for the upstream TLS setup: a host name that verify-full cannot
 * arm, or that cannot be sent as SNI, refuses the connection (and the start)
 * instead of connecting with a weaker check. */
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdlib.h>

#include "config.h"
#include "tls.h"
#include "unit.h"

/* A client context like the proxy's for sslmode require (no CA needed). */
static SSL_CTX *plain_ctx(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx)
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ctx;
}

static struct config config_for(enum upstream_tls_mode mode, char *host)
{
    struct config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.upstream_tls = mode;
    cfg.upstream_host = host;
    return cfg;
}

static void test_verify_full_arms_the_name(void)
{
    SSL_CTX *ctx = plain_ctx();
    char err[256] = "";
    struct config cfg = config_for(UPSTREAM_TLS_VERIFY_FULL, "db.example.test");
    SSL *ssl = tls_upstream_ssl(ctx, &cfg, err, sizeof err);
    const char *armed = ssl ? X509_VERIFY_PARAM_get0_host(SSL_get0_param(ssl), 0) : NULL;
    CHECK("verify-full: host name armed", armed && strcmp(armed, "db.example.test") == 0);
    SSL_free(ssl);

    cfg = config_for(UPSTREAM_TLS_VERIFY_FULL, "127.0.0.1");
    ssl = tls_upstream_ssl(ctx, &cfg, err, sizeof err);
    char *ip = ssl ? X509_VERIFY_PARAM_get1_ip_asc(SSL_get0_param(ssl)) : NULL;
    CHECK("verify-full: IP address armed", ip && strcmp(ip, "127.0.0.1") == 0);
    OPENSSL_free(ip);
    SSL_free(ssl);

    /* Looks like an address but is none: checked as a name (which no
     * certificate for a real address carries), never left unchecked. */
    cfg = config_for(UPSTREAM_TLS_VERIFY_FULL, "999.0.0.1");
    ssl = tls_upstream_ssl(ctx, &cfg, err, sizeof err);
    armed = ssl ? X509_VERIFY_PARAM_get0_host(SSL_get0_param(ssl), 0) : NULL;
    CHECK("verify-full: invalid IP-looking host armed as a name", armed && strcmp(armed, "999.0.0.1") == 0);
    SSL_free(ssl);

    cfg = config_for(UPSTREAM_TLS_REQUIRE, "/var/run/postgresql");
    ssl = tls_upstream_ssl(ctx, &cfg, err, sizeof err);
    CHECK("require: a socket directory as host still connects", ssl != NULL);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
}

/* SSL_set1_host("") returns 1 and arms nothing: unchecked, that connection
 * would only be verified as verify-ca. */
static void test_verify_full_without_a_name_is_refused(void)
{
    SSL_CTX *ctx = plain_ctx();
    char err[256] = "";
    struct config cfg = config_for(UPSTREAM_TLS_VERIFY_FULL, "");
    SSL *ssl = tls_upstream_ssl(ctx, &cfg, err, sizeof err);
    CHECK("verify-full with an empty host: no connection", ssl == NULL);
    CHECK("verify-full with an empty host: says why", strstr(err, "verify-full") != NULL);
    SSL_free(ssl);

    struct config start = config_for(UPSTREAM_TLS_VERIFY_FULL, "");
    err[0] = '\0';
    SSL_CTX *up = tls_upstream_ctx(&start, err, sizeof err);
    CHECK("verify-full with an empty host: refused at start", up == NULL && err[0]);
    SSL_CTX_free(up);

    cfg = config_for(UPSTREAM_TLS_VERIFY_CA, "");
    ssl = tls_upstream_ssl(ctx, &cfg, err, sizeof err);
    CHECK("verify-ca with an empty host: connects (no name to check)", ssl != NULL);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
}

/* Longer than SNI allows (255 bytes): OpenSSL refuses to send it. */
static void test_unsendable_sni_is_refused(void)
{
    SSL_CTX *ctx = plain_ctx();
    char err[256] = "", *host = malloc(301);
    memset(host, 'a', 300);
    host[300] = '\0';
    for (int i = 63; i < 300; i += 64)
        host[i] = '.';
    struct config cfg = config_for(UPSTREAM_TLS_REQUIRE, host);
    SSL *ssl = tls_upstream_ssl(ctx, &cfg, err, sizeof err);
    CHECK("require: over-long host name refused", ssl == NULL && strstr(err, "SNI") != NULL);
    SSL_free(ssl);
    cfg = config_for(UPSTREAM_TLS_VERIFY_FULL, host);
    ssl = tls_upstream_ssl(ctx, &cfg, err, sizeof err);
    CHECK("verify-full: over-long host name refused", ssl == NULL);
    SSL_free(ssl);
    struct config start = config_for(UPSTREAM_TLS_REQUIRE, host);
    SSL_CTX *up = tls_upstream_ctx(&start, err, sizeof err);
    CHECK("require: over-long host name refused at start", up == NULL);
    SSL_CTX_free(up);
    free(host);
    SSL_CTX_free(ctx);
}

int main(void)
{
    test_verify_full_arms_the_name();
    test_verify_full_without_a_name_is_refused();
    test_unsendable_sni_is_refused();
    return UNIT_RESULT();
}

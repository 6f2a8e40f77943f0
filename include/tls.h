/* TLS contexts: the certificate clients see, and how the upstream is
 * verified. */
#ifndef PGTANDEM_TLS_H
#define PGTANDEM_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

#include "config.h"

SSL_CTX *tls_client_side_ctx(const struct config *cfg, char *err, size_t errlen);
SSL_CTX *tls_upstream_ctx(const struct config *cfg, char *err, size_t errlen);
/* An SSL object for one upstream connection: SNI set to the host name (not
 * for IP literals, as RFC 6066 says), host name checked in verify-full. */
SSL *tls_upstream_ssl(SSL_CTX *ctx, const struct config *cfg);

#endif

/* TLS contexts: the certificate clients see, and how the upstream is
 * verified. */
#ifndef PGTANDEM_TLS_H
#define PGTANDEM_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

#include "compiler.h"
#include "config.h"

/* Each returns NULL with a message in err when anything that the mode
 * relies on cannot be set up (the caller refuses to start or connect). */
PGT_MUSTCHECK SSL_CTX *tls_client_side_ctx(const struct config *cfg, char *err, size_t errlen);
/* Also checks, once, that the host name can be sent and verified. */
PGT_MUSTCHECK SSL_CTX *tls_upstream_ctx(const struct config *cfg, char *err, size_t errlen);
/* An SSL object for one upstream connection: SNI set to the host name (not
 * for IP literals, as RFC 6066 says), host name or IP address armed for the
 * certificate check in verify-full. NULL when either cannot be set: never a
 * connection verified less than its sslmode says. */
PGT_MUSTCHECK SSL *tls_upstream_ssl(SSL_CTX *ctx, const struct config *cfg, char *err, size_t errlen);

#endif

/* SASLprep (RFC 4013) of a password, exactly as Postgres applies it before
 * SCRAM (src/common/saslprep.c, pg_saslprep): both its server when it
 * stores a verifier and libpq when it logs in. */
#ifndef PGTANDEM_SASLPREP_H
#define PGTANDEM_SASLPREP_H

#include <stddef.h>

#include "compiler.h"

/* The bytes SCRAM hashes for `password`: its SASLprep form, or the raw bytes
 * when Postgres uses those (pure ASCII; not UTF-8; a prohibited, unassigned
 * or badly bidirectional character; nothing left after mapping). *out is a
 * NUL-terminated malloc'd copy that the caller wipes and frees. 0, or -1
 * when out of memory. */
PGT_MUSTCHECK int saslprep_password(const char *password, size_t len, char **out, size_t *out_len);

#endif

/* The users file for auth "scram" (config/users.json): who may log in to
 * the proxy and with which SCRAM verifier, plus, for users stored with a
 * plain password, the password the proxy uses to log in upstream.
 *
 *   {"alice": "SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>",
 *    "bob":   {"password": "..."},
 *    "carol": {"verifier": "SCRAM-SHA-256$..."}}
 *
 * or PgBouncer's userlist.txt ("alice" "SCRAM-SHA-256$..." / "bob" "password"
 * per line), so that a PgBouncer auth_file works as it is.
 *
 * The file holds secrets: like .pgpass it is refused when its mode gives
 * the group or others any access. A table is immutable once loaded; a reload
 * (SIGHUP) loads a new one and swaps it in.
 *
 * Our copies of passwords and keys are wiped when freed; the JSON parser's
 * own transient copies of the file's strings are freed without wiping (its
 * allocator hooks are process-wide), which is why verifiers are preferred
 * over plain passwords in the file. */
#ifndef PGTANDEM_USERS_H
#define PGTANDEM_USERS_H

#include <stddef.h>

#include "compiler.h"
#include "scram.h"

/* A users file larger than this is refused (by the proxy and by passwd). */
#define USERS_FILE_MAX (16u << 20)

struct user_entry {
    char *name;
    struct scram_verifier verifier;  /* parsed, or derived from the password at load */
    char *password;                  /* NULL for verifier-only users; wiped on free */
    size_t password_len;
};

struct users {
    struct user_entry *entries;  /* sorted by name */
    size_t count;
};

/* Loads and validates the whole file; on failure returns -1 with a message
 * naming the file (and the user) in err, and *out untouched. */
PGT_MUSTCHECK int users_load(const char *path, struct users **out, char *err, size_t errlen);
const struct user_entry *users_find(const struct users *u, const char *name);
void users_free(struct users *u);

#endif

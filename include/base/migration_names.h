/* A migration's name and the Postgres identifiers derived from it. The name
 * is what users see and write (pgtandem.version, --parent, status); the
 * identifiers (the version schema, the old shape's schema, trigger and
 * constraint names) must fit Postgres's 63-byte names next to their
 * prefixes, so they carry the name's tag instead: the name itself when it
 * is short and plain, a cut of it and a hash of the whole otherwise. */
#ifndef PGTANDEM_MIGRATION_NAMES_H
#define PGTANDEM_MIGRATION_NAMES_H

#include <stddef.h>

/* The longest name a migration may have (a Prisma directory or a file's
 * name, whole, fits; a buffer of MIG_NAME_MAX + 1 holds any). */
#define MIG_NAME_MAX 127
/* The longest tag: "pgtandem_" + tag + "_old" and the object names stay
 * within 63 bytes. Names this long or shorter, of letters, digits, '_' and
 * '-', are their own tag, as they were before longer names were allowed. */
#define MIG_NAME_TAG_MAX 40

/* 1 when c may appear in a migration's name: letters, digits, '_', '-', '.'. */
int mig_name_char_ok(char c);
/* name's tag in out (MIG_NAME_TAG_MAX + 1 bytes). */
void mig_name_tag(const char *name, char out[MIG_NAME_TAG_MAX + 1]);
/* The schemas of a migration in progress, unquoted: its new shape's views
 * (pgtandem_<tag>) and the old shape's (pgtandem_<tag>_old). */
void mig_version_schema(const char *name, char *out, size_t n);
void mig_old_schema(const char *name, char *out, size_t n);
/* The name of a column's second column until the contract: a retype's
 * copy (alter_column), a column added under a name a rename frees
 * (add_column), which the converter writes data statements with. */
void mig_shadow_name(char *out, size_t n, const char *column);

#endif

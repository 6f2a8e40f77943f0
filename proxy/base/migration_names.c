/* A migration's tag: the part of its name that goes into identifiers
 * (migration_names.h). Short plain names are their own tag, so the schemas
 * and objects of migrations started before longer names were allowed keep
 * their names; a longer name keeps its first characters, readable in the
 * catalog, and a hash of the whole, so two names sharing those characters
 * still get different schemas. */
#include "migration_names.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

enum { TAG_PREFIX = MIG_NAME_TAG_MAX - 9 };   /* room for "_" and 8 hex digits */

static int ident_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

int mig_name_char_ok(char c)
{
    return ident_char(c) || c == '.';
}

/* FNV-1a, 64 bits: stable across builds and machines, which the tag must be
 * (every proxy of a fleet derives the same schema from the same name). */
static uint64_t fnv1a(const char *s)
{
    uint64_t h = 14695981039346656037ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

void mig_name_tag(const char *name, char out[MIG_NAME_TAG_MAX + 1])
{
    size_t len = strlen(name), plain = 1;
    for (size_t i = 0; i < len && plain; i++)
        plain = ident_char(name[i]);
    if (plain && len <= MIG_NAME_TAG_MAX) {
        memcpy(out, name, len + 1);
        return;
    }
    size_t k = 0;
    for (; k < len && k < TAG_PREFIX; k++)
        out[k] = ident_char(name[k]) ? name[k] : '_';
    snprintf(out + k, MIG_NAME_TAG_MAX + 1 - k, "_%08x", (unsigned)(fnv1a(name) >> 32));
}

void mig_version_schema(const char *name, char *out, size_t n)
{
    char tag[MIG_NAME_TAG_MAX + 1];
    mig_name_tag(name, tag);
    snprintf(out, n, "pgtandem_%s", tag);
}

void mig_old_schema(const char *name, char *out, size_t n)
{
    char tag[MIG_NAME_TAG_MAX + 1];
    mig_name_tag(name, tag);
    snprintf(out, n, "pgtandem_%s_old", tag);
}

void mig_shadow_name(char *out, size_t n, const char *column)
{
    snprintf(out, n, "_pgtandem_%.53s", column);
}

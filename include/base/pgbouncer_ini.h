/* PgBouncer's configuration as it is: reads a pgbouncer.ini and says, line
 * by line, what each setting becomes here (a pgtandem config key and its
 * value), which settings have no meaning here (logging destinations, the
 * admin console's users) and which it cannot honour (statement pooling, md5,
 * several upstream hosts...). A team moving from PgBouncer starts the proxy
 * on the file it already has and reads what was mapped and what was not,
 * instead of rewriting the config by hand and guessing.
 *
 * Pure: text in, a list out; config.c applies the mapped keys through the
 * same table as its own config file, so a value is checked the same way. */
#ifndef PGTANDEM_PGBOUNCER_INI_H
#define PGTANDEM_PGBOUNCER_INI_H

#include <stddef.h>

#include "compiler.h"

enum pgb_outcome {
    PGB_MAPPED,   /* becomes `key` = `value` here */
    PGB_IGNORED,  /* has no meaning here; `why` says so */
    PGB_REFUSED   /* changes what PgBouncer does in a way the proxy cannot: start refused */
};

struct pgb_item {
    enum pgb_outcome outcome;
    int line;
    char setting[128];  /* "[pgbouncer] pool_mode", "[databases] bench" */
    char key[32];       /* the pgtandem key (PGB_MAPPED) */
    char value[512];
    char why[256];      /* PGB_IGNORED, PGB_REFUSED */
};

struct pgb_translation {
    struct pgb_item *items;
    size_t count, cap;
};

/* Translates the text of a pgbouncer.ini (`path` for messages, and the
 * folder a relative auth_file or certificate path is resolved against, so
 * that the result does not depend on where the proxy was started). -1 only
 * for text that is not an ini file (err says where), or out of memory. */
PGT_MUSTCHECK int pgbouncer_ini_translate(const char *path, const char *text, struct pgb_translation *out,
                                          char *err, size_t errlen);
void pgbouncer_ini_free(struct pgb_translation *t);

/* One line per refused item ("\n  path:LINE: [pgbouncer] pool_mode: why"),
 * into err; returns how many were refused. */
int pgbouncer_ini_refusals(const char *path, const struct pgb_translation *t, char *err, size_t errlen);

#endif

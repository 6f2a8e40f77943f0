/* Migration files written as SQL: reads FILE.sql, converts it (sql_convert.c)
 * and parses the result as any JSON migration, so `migrate start|plan|lint`
 * take a .sql file directly. With a database, the old types of columns whose
 * type changes are read from its catalog (for the derived `down`). */
#ifndef PGTANDEM_SQL_LOAD_H
#define PGTANDEM_SQL_LOAD_H

#include <jansson.h>
#include <stddef.h>

#include "migration.h"

struct sql_load_options {
    const char *db;         /* optional: connection for old column types */
    const char *name;       /* optional: migration name */
    const char *parent;     /* optional: parent migration */
};

/* FILE.sql -> migration JSON object (caller decrefs). 0, or -1 with
 * "FILE:LINE:COL: message" in err. */
int sql_load_json(const char *path, const struct sql_load_options *opt, json_t **out, char *err, size_t errlen);

/* FILE.sql -> struct migration (its json is the converted text). */
int sql_load_migration(const char *path, const struct sql_load_options *opt, struct migration *out,
                       char *err, size_t errlen);

#endif

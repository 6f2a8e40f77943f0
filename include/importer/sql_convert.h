/* SQL -> pgtandem migration: reads what Alembic (`alembic upgrade A:B --sql`),
 * drizzle-kit and people write, with Postgres's own parser, and turns it into
 * the JSON migration of migration.h (pgroll's vocabulary). Statements that
 * cannot be expressed as online operations become `sql` operations only when
 * running them as they are is safe; anything else is refused with the
 * statement's line and column and the reason. Nothing is silently dropped
 * and nothing is reordered. */
#ifndef PGTANDEM_SQL_CONVERT_H
#define PGTANDEM_SQL_CONVERT_H

#include <jansson.h>
#include <stddef.h>

/* Looks up a column's current type in the live catalog (format_type text).
 * Returns 0 and fills type, or -1 when unknown. */
typedef int (*sqlc_column_type_fn)(void *arg, const char *schema, const char *table, const char *column,
                                   char *type, size_t typelen);

/* Whether the live catalog has an object today: kind "extension" or
 * "schema" (name as is), "relation" or "function" (name as SQL: a
 * qualified name, a signature "f(int, text)"). 1 yes, 0 no, -1 unknown. */
typedef int (*sqlc_exists_fn)(void *arg, const char *kind, const char *name);

/* Evaluates select_sql, a SELECT of one boolean that reads only Postgres's
 * catalog, on the live database without changing it (a DO block's
 * condition, whether an object it guards is there). 0 with *out set, or
 * -1 with why in err. */
typedef int (*sqlc_catalog_bool_fn)(void *arg, const char *select_sql, int *out, char *err, size_t errlen);

struct sqlc_options {
    const char *name;               /* NULL: the Alembic revision set, else the file name */
    const char *parent;             /* NULL: the Alembic revision replaced, else none */
    sqlc_column_type_fn column_type;/* optional: old types for deriving `down` */
    sqlc_exists_fn exists;          /* optional: whether a rollback may drop what IF NOT EXISTS creates */
    void *column_type_arg;          /* the argument of both lookups */
    int types_stand_in;             /* column_type answers one stand-in type (no catalog yet): what
                                       hangs on the real old type is left to the conversion that reads it */
    sqlc_catalog_bool_fn catalog_bool; /* optional: what decides a DO block (else it is refused, saying
                                       it needs --db); with types_stand_in every answer reads as false */
};

/* Converts text (from file, used in messages) into a migration object.
 * Returns 0 with *out set (caller decrefs), or -1 with
 * "FILE:LINE:COL: message" in err. */
int sqlc_convert(const char *file, const char *text, size_t len, const struct sqlc_options *opt,
                 json_t **out, char *err, size_t errlen);

/* True when path names an SQL file (ends in ".sql"). */
int sqlc_is_sql_file(const char *path);

#endif

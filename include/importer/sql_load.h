/* Migration files written as SQL: reads FILE.sql, converts it (sql_convert.c)
 * and parses the result as any JSON migration, so `migrate start|plan|lint`
 * take a .sql file directly. With a database, the old types of columns whose
 * type changes are read from its catalog (for the derived `down`). */
#ifndef PGTANDEM_SQL_LOAD_H
#define PGTANDEM_SQL_LOAD_H

#include <jansson.h>
#include <libpq-fe.h>
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

/* FILE.sql sent to a proxy as it is, for its engine to convert with the
 * catalog it reaches: {"sql_file": {"path", "text", "name"?, "parent"?}}.
 * The request body (caller frees), or NULL with err set. */
char *sql_load_body(const char *path, const struct sql_load_options *opt, char *err, size_t errlen);

/* A directory's *.sql files (in order, named names[i], the first one's
 * parent `parent`, each one's the file before) as such a chain:
 * {"sql_chain": [{"path", "text", "name", "parent"}, ...]}. */
char *sql_load_chain_body(char *const *paths, char *const *names, size_t n, const char *parent, char *err,
                          size_t errlen);

/* Such a body converted and parsed into *out: 1. 0: the body is not one
 * (*out untouched but zeroed); -1: err says why. conn: where the old column
 * types are read; NULL: a stand-in type, for checks of the rest before the
 * real conversion (the result's derived downs are then not the real ones). */
int sql_load_from_body(const char *body, size_t len, PGconn *conn, struct migration *out, char *err, size_t errlen);
/* The same for a chain: 1 with *out (n of them, in order), 0, or -1. */
int sql_load_chain_from_body(const char *body, size_t len, PGconn *conn, struct migration **out, size_t *n,
                             char *err, size_t errlen);

/* A request body's one migration: a .sql file's converted (conn as above),
 * else the migration's JSON. 0, or -1 with err. */
int sql_load_body_migration(const char *body, size_t len, PGconn *conn, struct migration *out, char *err,
                            size_t errlen);
/* A request body's chain, as JSON (mig_parse_chain) or as .sql files:
 * 1 with *out, 0 when it is no chain, -1 with err. */
int sql_load_body_chain(const char *body, size_t len, PGconn *conn, struct migration **out, size_t *n, char *err,
                        size_t errlen);

#endif

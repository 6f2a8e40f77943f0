/* Loads FILE.sql as a migration: converts it with the SQL converter and
 * hands the JSON to the ordinary migration parser, so a converted migration
 * is validated exactly like a hand-written one. The optional database is only
 * read (column types from pg_attribute), never changed. */
#include "sql_load.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sql_convert.h"


struct catalog {
    const char *db;
    PGconn *conn;
    int failed;     /* connect once; a failure means "type unknown" */
};

static int catalog_column_type(void *arg, const char *schema, const char *table, const char *column,
                               char *type, size_t typelen)
{
    struct catalog *cat = arg;
    if (!cat->db || cat->failed)
        return -1;
    if (!cat->conn) {
        cat->conn = PQconnectdb(cat->db);
        if (PQstatus(cat->conn) != CONNECTION_OK) {
            cat->failed = 1;
            return -1;
        }
    }
    const char *params[3] = {schema, table, column};
    PGresult *r = PQexecParams(cat->conn,
        "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
        " WHERE a.attrelid = to_regclass(format('%I.%I', $1::text, $2::text))"
        "   AND a.attname = $3 AND a.attnum > 0 AND NOT a.attisdropped", 3, NULL, params, NULL, NULL, 0);
    int rc = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        snprintf(type, typelen, "%s", PQgetvalue(r, 0, 0));
        rc = 0;
    }
    PQclear(r);
    return rc;
}

/* text: FILE.sql's bytes. */
static int convert(const char *path, const char *text, size_t len, const struct sql_load_options *opt, json_t **out,
                   char *err, size_t errlen)
{
    struct catalog cat = {.db = opt ? opt->db : NULL};
    struct sqlc_options co = {.name = opt ? opt->name : NULL, .parent = opt ? opt->parent : NULL,
                              .column_type = catalog_column_type, .column_type_arg = &cat};
    int rc = sqlc_convert(path, text, len, &co, out, err, errlen);
    if (cat.conn)
        PQfinish(cat.conn);
    return rc;
}

int sql_load_json(const char *path, const struct sql_load_options *opt, json_t **out, char *err, size_t errlen)
{
    size_t len = 0;
    char *text = mig_read_file(path, &len, err, errlen);
    int rc = text ? convert(path, text, len, opt, out, err, errlen) : -1;
    free(text);
    return rc;
}

int sql_load_migration(const char *path, const struct sql_load_options *opt, struct migration *out,
                       char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    size_t len = 0;
    char *sql = mig_read_file(path, &len, err, errlen);
    json_t *m = NULL;
    int rc = sql ? convert(path, sql, len, opt, &m, err, errlen) : -1;
    char *text = rc == 0 ? json_dumps(m, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(m);
    if (rc == 0 && !text)
        rc = (snprintf(err, errlen, "%s: out of memory", path), -1);
    if (rc == 0)
        rc = mig_parse(text, strlen(text), path, out, err, errlen);
    /* The file, not its conversion, is what was applied: a derived `down`
     * reads the live catalog, which the migration itself changes, so the
     * converted text of an applied file is not stable. */
    if (rc == 0)
        mig_checksum(sql, len, out->checksum);
    free(text);
    free(sql);
    return rc;
}

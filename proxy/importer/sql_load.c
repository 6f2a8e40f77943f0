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
    int borrowed;   /* conn is the caller's: not ours to close */
    const char *stand_in;   /* no catalog: every old type reads as this */
};

/* The connection, opened on first use; NULL when there is none. */
static PGconn *catalog_conn(struct catalog *cat)
{
    if ((!cat->db && !cat->conn) || cat->failed)
        return NULL;
    if (!cat->conn) {
        cat->conn = PQconnectdb(cat->db);
        if (PQstatus(cat->conn) != CONNECTION_OK) {
            cat->failed = 1;
            return NULL;
        }
    }
    return cat->conn;
}

static int catalog_column_type(void *arg, const char *schema, const char *table, const char *column,
                               char *type, size_t typelen)
{
    struct catalog *cat = arg;
    if (cat->stand_in) {
        snprintf(type, typelen, "%s", cat->stand_in);
        return 0;
    }
    if (!catalog_conn(cat))
        return -1;
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

/* Whether an object is in the catalog today (sqlc_exists_fn). A name
 * Postgres cannot read answers "unknown", never "absent": a rollback then
 * drops nothing it may not have made. */
static int catalog_exists(void *arg, const char *kind, const char *name)
{
    static const struct {
        const char *kind, *sql;
    } q[] = {
        {"extension", "SELECT count(*) FROM pg_extension WHERE extname = $1"},
        {"schema", "SELECT count(*) FROM pg_namespace WHERE nspname = $1"},
        {"relation", "SELECT count(to_regclass($1))"},
        {"function", "SELECT count(to_regprocedure($1))"},
    };
    struct catalog *cat = arg;
    PGconn *conn = cat->stand_in ? NULL : catalog_conn(cat);
    for (size_t i = 0; conn && i < sizeof q / sizeof q[0]; i++) {
        if (strcmp(q[i].kind, kind) != 0)
            continue;
        const char *params[1] = {name};
        PGresult *r = PQexecParams(conn, q[i].sql, 1, NULL, params, NULL, NULL, 0);
        int rc = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 ? strcmp(PQgetvalue(r, 0, 0), "0") != 0
                                                                          : -1;
        PQclear(r);
        return rc;
    }
    return -1;
}

/* A DO block's condition, or whether an object it guards is there
 * (sqlc_catalog_bool_fn): run in a transaction of its own that cannot
 * write, with a timeout, and rolled back. The connection must be idle (the
 * CLI's own, or the engine's before its first step). */
static int catalog_bool(void *arg, const char *select_sql, int *out, char *err, size_t errlen)
{
    struct catalog *cat = arg;
    PGconn *conn = catalog_conn(cat);
    if (!conn)
        return snprintf(err, errlen, "no connection to the database%s%s", cat->conn ? ": " : "",
                        cat->conn ? PQerrorMessage(cat->conn) : ""), -1;
    if (PQtransactionStatus(conn) != PQTRANS_IDLE)
        return snprintf(err, errlen, "the connection is inside a transaction"), -1;
    PGresult *r = PQexec(conn, "BEGIN READ ONLY; SET LOCAL statement_timeout = '30s'");
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -1;
    PQclear(r);
    r = rc == 0 ? PQexec(conn, select_sql) : NULL;
    if (rc == 0 && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQnfields(r) == 1 &&
        !PQgetisnull(r, 0, 0)) {
        *out = PQgetvalue(r, 0, 0)[0] == 't';
    } else {
        const char *why = PQerrorMessage(conn);
        snprintf(err, errlen, "%.*s", (int)strcspn(why && *why ? why : "not one boolean", "\n"),
                 why && *why ? why : "not one boolean");
        rc = -1;
    }
    PQclear(r);
    PQclear(PQexec(conn, "ROLLBACK"));
    return rc;
}

/* text: FILE.sql's bytes. */
static int convert_with(struct catalog *cat, const char *path, const char *text, size_t len,
                        const struct sql_load_options *opt, json_t **out, char *err, size_t errlen)
{
    struct sqlc_options co = {.name = opt ? opt->name : NULL, .parent = opt ? opt->parent : NULL,
                              .column_type = catalog_column_type, .exists = catalog_exists,
                              .catalog_bool = cat->db || cat->conn ? catalog_bool : NULL,
                              .column_type_arg = cat, .types_stand_in = cat->stand_in != NULL};
    int rc = sqlc_convert(path, text, len, &co, out, err, errlen);
    if (cat->conn && !cat->borrowed)
        PQfinish(cat->conn);
    return rc;
}

static int convert(const char *path, const char *text, size_t len, const struct sql_load_options *opt, json_t **out,
                   char *err, size_t errlen)
{
    struct catalog cat = {.db = opt ? opt->db : NULL};
    return convert_with(&cat, path, text, len, opt, out, err, errlen);
}

int sql_load_json(const char *path, const struct sql_load_options *opt, json_t **out, char *err, size_t errlen)
{
    size_t len = 0;
    char *text = mig_read_file(path, &len, err, errlen);
    int rc = text ? convert(path, text, len, opt, out, err, errlen) : -1;
    free(text);
    return rc;
}

/* The converted JSON parsed as a migration; its checksum is the SQL's. */
static int parse_converted(struct catalog *cat, const char *path, const char *sql, size_t len,
                           const struct sql_load_options *opt, struct migration *out, char *err, size_t errlen)
{
    json_t *m = NULL;
    int rc = convert_with(cat, path, sql, len, opt, &m, err, errlen);
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
    return rc;
}

int sql_load_migration(const char *path, const struct sql_load_options *opt, struct migration *out,
                       char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    size_t len = 0;
    char *sql = mig_read_file(path, &len, err, errlen);
    struct catalog cat = {.db = opt ? opt->db : NULL};
    int rc = sql ? parse_converted(&cat, path, sql, len, opt, out, err, errlen) : -1;
    free(sql);
    return rc;
}

/* ---- FILE.sql sent to a proxy as it is ---- */

/* {"path", "text", "name"?, "parent"?} */
static json_t *file_object(const char *path, const char *name, const char *parent, char *err, size_t errlen)
{
    size_t len = 0;
    char *sql = mig_read_file(path, &len, err, errlen);
    if (!sql)
        return NULL;
    json_t *o = json_pack("{s:s,s:s%,s:s*,s:s*}", "path", path, "text", sql, len, "name", name, "parent", parent);
    free(sql);
    if (!o)
        snprintf(err, errlen, "%s: out of memory (or not UTF-8)", path);
    return o;
}

static char *dump_body(json_t *o, char *err, size_t errlen)
{
    char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (o && !body)
        snprintf(err, errlen, "out of memory");
    return body;
}

char *sql_load_body(const char *path, const struct sql_load_options *opt, char *err, size_t errlen)
{
    json_t *f = file_object(path, opt ? opt->name : NULL, opt ? opt->parent : NULL, err, errlen);
    return f ? dump_body(json_pack("{s:o}", "sql_file", f), err, errlen) : NULL;
}

char *sql_load_chain_body(char *const *paths, char *const *names, size_t n, const char *parent, char *err,
                          size_t errlen)
{
    json_t *list = json_array();
    for (size_t i = 0; list && i < n; i++) {
        json_t *f = file_object(paths[i], names[i], i ? names[i - 1] : parent, err, errlen);
        if (!f || json_array_append_new(list, f) != 0) {
            json_decref(list);
            return NULL;
        }
    }
    return list ? dump_body(json_pack("{s:o}", "sql_chain", list), err, errlen) : NULL;
}

/* One {"path", "text", ...} converted; the catalog read through conn, or
 * (NULL) a stand-in type for checks of the rest before the real conversion. */
static int from_file_object(json_t *f, PGconn *conn, struct migration *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    const char *path = json_string_value(json_object_get(f, "path"));
    const char *text = json_string_value(json_object_get(f, "text"));
    struct sql_load_options o = {.name = json_string_value(json_object_get(f, "name")),
                                 .parent = json_string_value(json_object_get(f, "parent"))};
    struct catalog cat = {.conn = conn, .borrowed = 1, .stand_in = conn ? NULL : "text"};
    if (!path || !text)
        return snprintf(err, errlen, "a .sql file must be sent as {\"path\": FILE, \"text\": its SQL, \"name\"?, "
                        "\"parent\"?}"), -1;
    return parse_converted(&cat, path, text, json_string_length(json_object_get(f, "text")), &o, out, err, errlen);
}

int sql_load_from_body(const char *body, size_t len, PGconn *conn, struct migration *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    json_t *root = json_loadb(body, len, 0, NULL);
    json_t *f = json_object_get(root, "sql_file");
    int rc = f ? (from_file_object(f, conn, out, err, errlen) == 0 ? 1 : -1) : 0;
    json_decref(root);
    return rc;
}

int sql_load_body_migration(const char *body, size_t len, PGconn *conn, struct migration *out, char *err,
                            size_t errlen)
{
    int sql = sql_load_from_body(body, len, conn, out, err, errlen);
    if (sql < 0)
        return -1;
    return sql ? 0 : mig_parse(body, len, "request body", out, err, errlen);
}

int sql_load_body_chain(const char *body, size_t len, PGconn *conn, struct migration **out, size_t *n, char *err,
                        size_t errlen)
{
    int chain = mig_parse_chain(body, len, out, n, err, errlen);
    return chain ? chain : sql_load_chain_from_body(body, len, conn, out, n, err, errlen);
}

int sql_load_chain_from_body(const char *body, size_t len, PGconn *conn, struct migration **out, size_t *n,
                             char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    json_t *root = json_loadb(body, len, 0, NULL);
    json_t *files = json_object_get(root, "sql_chain");
    if (!files) {
        json_decref(root);
        return 0;
    }
    size_t count = json_array_size(files), done = 0;
    struct migration *list = count ? calloc(count, sizeof *list) : NULL;
    int rc = list ? 0 : (snprintf(err, errlen, "\"sql_chain\" must be a non-empty array of .sql files"), -1);
    for (; rc == 0 && done < count; done++)
        rc = from_file_object(json_array_get(files, done), conn, &list[done], err, errlen);
    json_decref(root);
    if (rc != 0) {
        mig_free_list(list, done);
        return -1;
    }
    *out = list;
    *n = count;
    return 1;
}

/* The migration tool's own history table, read and written as that tool
 * does (tool_history.h). Each fact about a table below names the tool's
 * source it is taken from.
 *
 * The tool's row of a file is written right after the expand, before the
 * backfill, not in the expand's transaction: an expand is several
 * transactions (CREATE INDEX CONCURRENTLY runs outside one), so it has no
 * single commit to join. From that moment the tool counts the file as its
 * own (drizzle, golang-migrate, Flyway, node-pg-migrate and Prisma's
 * deploy skip it: Prisma's row is finished, its steps counted at
 * complete), which is what a migration in
 * flight needs: the file must not run a second time, offline, while both
 * shapes are live. A crash between the expand and the row leaves the file
 * pending in the tool, as before the start, and the expand in flight in
 * pgtandem, which `status DIR` shows. */
#include "tool_history.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_checks.h"
#include "migration_lifecycle.h"
#include "migration_sql.h"

/* pgtandem's note of each row it wrote: complete and rollback find the
 * rows of a migration there, without the directory. */
#define ROWS_DDL "CREATE SCHEMA IF NOT EXISTS pgtandem; CREATE TABLE IF NOT EXISTS pgtandem.tool_rows (" \
                 " tool text NOT NULL, file text NOT NULL, migration text NOT NULL, schema_name text NOT NULL," \
                 " key text NOT NULL, previous text, written_at timestamptz NOT NULL DEFAULT now()," \
                 " PRIMARY KEY (tool, file))"

/* The tools wait this long for each other's advisory lock (Prisma's own
 * wait is 10 s: flavour/postgres.rs, ADVISORY_LOCK_TIMEOUT). */
#define LOCK_WAIT "SET LOCAL lock_timeout = '10s'"

const char *tool_kind_word(enum tool_kind kind)
{
    switch (kind) {
    case TOOL_DRIZZLE: return "drizzle-kit";
    case TOOL_PRISMA: return "Prisma";
    case TOOL_FLYWAY: return "Flyway";
    case TOOL_GOLANG_MIGRATE: return "golang-migrate";
    case TOOL_NODE_PG_MIGRATE: return "node-pg-migrate";
    case TOOL_NONE: break;
    }
    return "none";
}

static const char *table_of(enum tool_kind kind)
{
    switch (kind) {
    case TOOL_DRIZZLE: return "__drizzle_migrations";
    case TOOL_PRISMA: return "_prisma_migrations";
    case TOOL_FLYWAY: return "flyway_schema_history";
    case TOOL_GOLANG_MIGRATE: return "schema_migrations";
    case TOOL_NODE_PG_MIGRATE: return "pgmigrations";
    case TOOL_NONE: break;
    }
    return "";
}

const char *tool_kind_table(enum tool_kind kind)
{
    switch (kind) {
    case TOOL_DRIZZLE: return "drizzle.__drizzle_migrations";
    case TOOL_NODE_PG_MIGRATE: return "public.pgmigrations";
    default: return table_of(kind);
    }
}

void tool_history_free(struct tool_history *th)
{
    for (size_t i = 0; i < th->n; i++) {
        free(th->f[i].name);
        free(th->f[i].key);
        free(th->f[i].checksum);
        free(th->f[i].order);
        free(th->f[i].script);
    }
    free(th->f);
    memset(th, 0, sizeof *th);
}

unsigned long tool_crc32(unsigned long crc, const unsigned char *p, size_t n)
{
    crc = ~crc & 0xffffffffUL;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xedb88320UL & (0UL - (crc & 1)));
    }
    return ~crc & 0xffffffffUL;
}

/* golang-migrate database/util.go, GenerateAdvisoryLockId: CRC-32 of the
 * names joined by NUL bytes, times the salt 1486364155, as a uint32; its
 * postgres driver (database/postgres/postgres.go, Lock) passes database
 * name, migrations schema and migrations table. */
void tool_golang_lock_id(const char *const *names, size_t n, char out[16])
{
    unsigned long crc = 0;
    for (size_t i = 0; i < n; i++) {
        if (i)
            crc = tool_crc32(crc, (const unsigned char *)"", 1);
        crc = tool_crc32(crc, (const unsigned char *)names[i], strlen(names[i]));
    }
    snprintf(out, 16, "%lu", (crc * 1486364155UL) & 0xffffffffUL);
}

/* Flyway's advisory lock on PostgreSQL (PostgreSQLConnection.lock, with
 * PostgreSQLAdvisoryLockTemplate): 77431708279161 plus the Java hashCode
 * (an int) of the table's toString(), which is the schema and table each
 * quoted ("schema"."table", a quote doubled inside). */
void tool_flyway_lock_id(const char *schema, const char *table, char out[24])
{
    uint32_t h = 0;
    const char *parts[2] = {schema, table};
    for (int k = 0; k < 2; k++) {
        if (k)
            h = 31u * h + '.';
        h = 31u * h + '"';
        for (const unsigned char *c = (const unsigned char *)parts[k]; *c; c++) {
            h = 31u * h + *c;
            if (*c == '"')
                h = 31u * h + '"';
        }
        h = 31u * h + '"';
    }
    int32_t hash = h <= INT32_MAX ? (int32_t)h : -(int32_t)(UINT32_MAX - h) - 1;
    snprintf(out, 24, "%lld", 77431708279161LL + (long long)hash);
}

/* ---- where the table is ---- */

/* The schema the tool keeps its table in: drizzle's is "drizzle"
 * (drizzle-orm pg-core/dialect.ts, migrate(): migrationsSchema defaults to
 * "drizzle"); node-pg-migrate's "public" (src/runner.ts: migrationsSchema
 * defaults to the schema option, "public"); Prisma, Flyway and
 * golang-migrate use the connection's current schema (Prisma's table is
 * created unqualified; Flyway's default schema is the first of the search
 * path; golang-migrate's postgres.go WithConnection reads
 * CURRENT_SCHEMA()). */
static int schema_of(PGconn *conn, enum tool_kind kind, char *out, size_t cap, char *err, size_t errlen)
{
    if (kind == TOOL_DRIZZLE || kind == TOOL_NODE_PG_MIGRATE) {
        snprintf(out, cap, "%s", kind == TOOL_DRIZZLE ? "drizzle" : "public");
        return 0;
    }
    PGresult *r = engine_exec_params(conn, "SELECT coalesce(current_schema(), 'public')", 0, NULL, err, errlen);
    if (!r)
        return -1;
    snprintf(out, cap, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return 0;
}

static char *qualified(const char *schema, const char *table)
{
    char *s = mig_quote_ident(schema), *t = mig_quote_ident(table);
    char *q = s && t ? malloc(strlen(s) + strlen(t) + 2) : NULL;
    if (q)
        sprintf(q, "%s.%s", s, t);
    free(s);
    free(t);
    return q;
}

static int table_exists(PGconn *conn, const char *schema, const char *table, char *err, size_t errlen)
{
    const char *v[2] = {schema, table};
    PGresult *r = engine_exec_params(conn, "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                                     " WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
                                     2, v, err, errlen);
    if (!r)
        return -1;
    int found = PQntuples(r) > 0;
    PQclear(r);
    return found;
}

/* ---- reading ---- */

static struct tool_file *file_of_key(struct tool_history *th, const char *key)
{
    for (size_t i = 0; i < th->n; i++)
        if (th->f[i].key && !strcmp(th->f[i].key, key))
            return &th->f[i];
    return NULL;
}

/* Files pgtandem wrote a row of (tool_rows): those rows are its own. */
static int mark_pgtandem(PGconn *conn, struct tool_history *th, char *err, size_t errlen)
{
    int there = table_exists(conn, "pgtandem", "tool_rows", err, errlen);
    if (there <= 0)
        return there;
    const char *v[1] = {tool_kind_word(th->kind)};
    PGresult *r = engine_exec_params(conn, "SELECT file FROM pgtandem.tool_rows WHERE tool = $1", 1, v, err, errlen);
    if (!r)
        return -1;
    for (int k = 0; k < PQntuples(r); k++)
        for (size_t i = 0; i < th->n; i++)
            if (th->f[i].name && !strcmp(th->f[i].name, PQgetvalue(r, k, 0)))
                th->f[i].state = TOOL_PGTANDEM;
    PQclear(r);
    return 0;
}

/* drizzle-orm pg-core/dialect.ts, migrate(): the newest row (ORDER BY
 * created_at DESC LIMIT 1) decides; a migration runs when there is none or
 * Number(created_at) < its journal entry's `when` (folderMillis,
 * migrator.ts readMigrationFiles). */
static int read_drizzle(PGconn *conn, const char *q, struct tool_history *th, char *err, size_t errlen)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT hash, id, created_at, (SELECT created_at FROM %s ORDER BY created_at DESC"
             " LIMIT 1) FROM %s", q, q);
    PGresult *r = engine_exec_params(conn, sql, 0, NULL, err, errlen);
    if (!r)
        return -1;
    int rows = PQntuples(r);
    long long newest = rows && !PQgetisnull(r, 0, 3) ? atoll(PQgetvalue(r, 0, 3)) : 0;
    for (size_t i = 0; i < th->n; i++) {
        struct tool_file *f = &th->f[i];
        long long when = f->order ? atoll(f->order) : 0;
        f->state = rows && newest >= when ? TOOL_APPLIED : TOOL_PENDING;
        int k = 0;
        while (k < rows && strcmp(PQgetvalue(r, k, 0), f->key) != 0)
            k++;
        if (k < rows)
            snprintf(f->said, sizeof f->said, "row id %s, created_at %s", PQgetvalue(r, k, 1), PQgetvalue(r, k, 2));
        else if (f->state == TOOL_APPLIED)
            snprintf(f->said, sizeof f->said, "no row of its hash; its when %lld is not after the newest created_at"
                     " %lld, so drizzle counts it applied", when, newest);
        else
            snprintf(f->said, sizeof f->said, "no row; when %lld is after the newest created_at%s", when,
                     rows ? "" : " (the table is empty)");
    }
    PQclear(r);
    return 0;
}

/* Prisma schema-engine core/src/commands/apply_migrations.rs: a migration
 * is applied when a row of its name is not rolled back
 * (rolled_back_at IS NULL); a row neither finished nor rolled back is a
 * failed migration, and deploy refuses (P3009) until it is resolved. */
static int read_prisma(PGconn *conn, const char *q, struct tool_history *th, const struct tool_history *mine,
                       char *err, size_t errlen)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT migration_name, id, finished_at IS NOT NULL, rolled_back_at IS NOT NULL,"
             " coalesce(finished_at::text, '') FROM %s ORDER BY started_at", q);
    PGresult *r = engine_exec_params(conn, sql, 0, NULL, err, errlen);
    if (!r)
        return -1;
    int rc = 0;
    for (int k = 0; k < PQntuples(r) && rc == 0; k++) {
        struct tool_file *f = file_of_key(th, PQgetvalue(r, k, 0));
        int finished = PQgetvalue(r, k, 2)[0] == 't', rolled = PQgetvalue(r, k, 3)[0] == 't';
        if (rolled)
            continue;
        size_t at = f ? (size_t)(f - th->f) : 0;
        if (!finished && !(f && mine->f[at].state == TOOL_PGTANDEM)) {
            snprintf(err, errlen, "%s: migration %s started and did not finish (row id %s of _prisma_migrations);"
                     " prisma migrate deploy refuses to go on from a failed migration (P3009), and so does "
                     "pgtandem: fix what it left, then `prisma migrate resolve --rolled-back %s` (or --applied)",
                     tool_kind_word(th->kind), PQgetvalue(r, k, 0), PQgetvalue(r, k, 1), PQgetvalue(r, k, 0));
            rc = 1;
        } else if (f) {
            f->state = TOOL_APPLIED;
            snprintf(f->said, sizeof f->said, "row id %s, %s", PQgetvalue(r, k, 1),
                     finished ? "finished" : "started, not finished (in flight in pgtandem)");
            if (finished)
                snprintf(f->said + strlen(f->said), sizeof f->said - strlen(f->said), " at %s", PQgetvalue(r, k, 4));
        }
    }
    PQclear(r);
    return rc;
}

/* Flyway JdbcTableSchemaHistory / validate: a versioned migration is
 * applied when a successful row of its version exists; a failed row, or a
 * checksum that differs from the file's, fails validate, and migrate with
 * it. */
static int read_flyway(PGconn *conn, const char *q, struct tool_history *th, const struct tool_history *mine,
                       char *err, size_t errlen)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT version, installed_rank, coalesce(checksum::text, ''), success FROM %s"
             " WHERE version IS NOT NULL ORDER BY installed_rank", q);
    PGresult *r = engine_exec_params(conn, sql, 0, NULL, err, errlen);
    if (!r)
        return -1;
    int rc = 0;
    for (int k = 0; k < PQntuples(r) && rc == 0; k++) {
        struct tool_file *f = file_of_key(th, PQgetvalue(r, k, 0));
        if (!f)
            continue;
        int ok = PQgetvalue(r, k, 3)[0] == 't', ours = mine->f[f - th->f].state == TOOL_PGTANDEM;
        const char *sum = PQgetvalue(r, k, 2);
        if (!ok && !ours) {
            snprintf(err, errlen, "Flyway: version %s failed (installed_rank %s, success false); flyway migrate "
                     "refuses a failed migration, and so does pgtandem: fix what it left, then flyway repair",
                     f->key, PQgetvalue(r, k, 1));
            rc = 1;
        } else if (sum[0] && f->checksum && strcmp(sum, f->checksum) != 0) {
            snprintf(err, errlen, "Flyway: %s was changed after it ran (checksum %s in flyway_schema_history, %s in"
                     " the file); flyway validate refuses that, and so does pgtandem: restore the file", f->script,
                     sum, f->checksum);
            rc = 1;
        } else {
            f->state = TOOL_APPLIED;
            snprintf(f->said, sizeof f->said, "installed_rank %s, checksum %s, success %s", PQgetvalue(r, k, 1),
                     sum[0] ? sum : "null", ok ? "true" : "false");
        }
    }
    PQclear(r);
    return rc;
}

/* golang-migrate database/postgres/postgres.go, Version(): one row
 * (version, dirty); migrate up runs the files whose version is above it,
 * and refuses a dirty version (migrate.go, ErrDirty). */
static int read_golang(PGconn *conn, const char *q, struct tool_history *th, char *err, size_t errlen)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT version, dirty FROM %s LIMIT 1", q);
    PGresult *r = engine_exec_params(conn, sql, 0, NULL, err, errlen);
    if (!r)
        return -1;
    int rc = 0;
    if (PQntuples(r) == 1 && PQgetvalue(r, 0, 1)[0] == 't') {
        snprintf(err, errlen, "golang-migrate: the database is dirty at version %s (a migration failed half way); "
                 "migrate up refuses that, and so does pgtandem: fix what it left, then migrate force VERSION",
                 PQgetvalue(r, 0, 0));
        rc = 1;
    }
    long long at = PQntuples(r) == 1 ? atoll(PQgetvalue(r, 0, 0)) : -1;
    for (size_t i = 0; rc == 0 && i < th->n; i++) {
        struct tool_file *f = &th->f[i];
        f->state = atoll(f->key) <= at ? TOOL_APPLIED : TOOL_PENDING;
        snprintf(f->said, sizeof f->said, at < 0 ? "no version yet" : "version %lld, dirty false", at);
    }
    PQclear(r);
    return rc;
}

/* node-pg-migrate src/runner.ts: the names in the table are run; any
 * other migration is pending. */
static int read_node_pg(PGconn *conn, const char *q, struct tool_history *th, char *err, size_t errlen)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT name, id, run_on FROM %s ORDER BY run_on, id", q);
    PGresult *r = engine_exec_params(conn, sql, 0, NULL, err, errlen);
    if (!r)
        return -1;
    for (int k = 0; k < PQntuples(r); k++) {
        struct tool_file *f = file_of_key(th, PQgetvalue(r, k, 0));
        if (!f)
            continue;
        f->state = TOOL_APPLIED;
        snprintf(f->said, sizeof f->said, "row id %s, run_on %s", PQgetvalue(r, k, 1), PQgetvalue(r, k, 2));
    }
    PQclear(r);
    return 0;
}

int tool_history_read(PGconn *conn, struct tool_history *th, char *err, size_t errlen)
{
    if (th->kind == TOOL_NONE)
        return 0;
    char schema[128];
    if (schema_of(conn, th->kind, schema, sizeof schema, err, errlen) != 0)
        return -1;
    int there = table_exists(conn, schema, table_of(th->kind), err, errlen);
    for (size_t i = 0; i < th->n; i++) {
        th->f[i].state = TOOL_PENDING;
        snprintf(th->f[i].said, sizeof th->f[i].said, "%s", there > 0 ? "no row" : "no table");
    }
    if (there <= 0)
        return there;
    th->table = 1;
    /* pgtandem's own rows first: an unfinished Prisma row or a Flyway row
     * of a migration in flight is not a failure */
    struct tool_history mine = *th;
    mine.f = calloc(th->n + 1, sizeof *mine.f);
    if (!mine.f)
        return snprintf(err, errlen, "out of memory"), -1;
    for (size_t i = 0; i < th->n; i++)
        mine.f[i] = (struct tool_file){.name = th->f[i].name, .state = TOOL_PENDING};
    char *q = qualified(schema, table_of(th->kind));
    int rc = q ? mark_pgtandem(conn, &mine, err, errlen) : (snprintf(err, errlen, "out of memory"), -1);
    if (rc == 0) {
        switch (th->kind) {
        case TOOL_DRIZZLE: rc = read_drizzle(conn, q, th, err, errlen); break;
        case TOOL_PRISMA: rc = read_prisma(conn, q, th, &mine, err, errlen); break;
        case TOOL_FLYWAY: rc = read_flyway(conn, q, th, &mine, err, errlen); break;
        case TOOL_GOLANG_MIGRATE: rc = read_golang(conn, q, th, err, errlen); break;
        case TOOL_NODE_PG_MIGRATE: rc = read_node_pg(conn, q, th, err, errlen); break;
        case TOOL_NONE: break;
        }
    }
    for (size_t i = 0; rc == 0 && i < th->n; i++)
        if (mine.f[i].state == TOOL_PGTANDEM && th->f[i].state == TOOL_APPLIED)
            th->f[i].state = TOOL_PGTANDEM;
    free(mine.f);
    free(q);
    return rc;
}

/* ---- writing ---- */

/* The table as the tool creates it, when it is not there yet:
 * drizzle-orm pg-core/dialect.ts migrate() (CREATE SCHEMA IF NOT EXISTS,
 * then the table); Prisma flavour/postgres.rs create_migrations_table;
 * Flyway's createMetaDataTable.sql of its PostgreSQL database module
 * (the table, its primary key and its success index); golang-migrate
 * postgres.go ensureVersionTable; node-pg-migrate src/migration.ts
 * (ensureMigrationsTable in runner.ts). */
static int create_table(PGconn *conn, enum tool_kind kind, const char *schema, const char *q, char *err,
                        size_t errlen)
{
    char *s = mig_quote_ident(schema), *pk = mig_quote_ident("flyway_schema_history_pk"),
         *ix = mig_quote_ident("flyway_schema_history_s_idx");
    char sql[1400] = "";
    switch (kind) {
    case TOOL_DRIZZLE:
        snprintf(sql, sizeof sql, "CREATE SCHEMA IF NOT EXISTS %s; CREATE TABLE IF NOT EXISTS %s (id SERIAL PRIMARY"
                 " KEY, hash text NOT NULL, created_at bigint)", s, q);
        break;
    case TOOL_PRISMA:
        snprintf(sql, sizeof sql, "CREATE TABLE %s (id VARCHAR(36) PRIMARY KEY NOT NULL, checksum VARCHAR(64) NOT"
                 " NULL, finished_at TIMESTAMPTZ, migration_name VARCHAR(255) NOT NULL, logs TEXT, rolled_back_at"
                 " TIMESTAMPTZ, started_at TIMESTAMPTZ NOT NULL DEFAULT now(), applied_steps_count INTEGER NOT NULL"
                 " DEFAULT 0)", q);
        break;
    case TOOL_FLYWAY:
        snprintf(sql, sizeof sql, "CREATE TABLE %s (installed_rank INT NOT NULL, version VARCHAR(50), description"
                 " VARCHAR(200) NOT NULL, type VARCHAR(20) NOT NULL, script VARCHAR(1000) NOT NULL, checksum INTEGER,"
                 " installed_by VARCHAR(100) NOT NULL, installed_on TIMESTAMP NOT NULL DEFAULT now(), execution_time"
                 " INTEGER NOT NULL, success BOOLEAN NOT NULL); ALTER TABLE %s ADD CONSTRAINT %s PRIMARY KEY"
                 " (installed_rank); CREATE INDEX %s ON %s (success)", q, q, pk, ix, q);
        break;
    case TOOL_GOLANG_MIGRATE:
        snprintf(sql, sizeof sql, "CREATE TABLE IF NOT EXISTS %s (version bigint not null primary key, dirty boolean"
                 " not null)", q);
        break;
    case TOOL_NODE_PG_MIGRATE:
        snprintf(sql, sizeof sql, "CREATE TABLE %s (id SERIAL PRIMARY KEY, name varchar(255) NOT NULL, run_on"
                 " timestamp NOT NULL)", q);
        break;
    case TOOL_NONE: break;
    }
    free(s);
    free(pk);
    free(ix);
    int rc = engine_exec_simple(conn, sql, NULL, err, errlen);
    return rc;
}

/* The tool's advisory lock, for this transaction: Prisma's 72707369
 * (flavour/postgres.rs acquire_lock), node-pg-migrate's 7241865325823964
 * (src/runner.ts, PG_MIGRATE_LOCK_ID), golang-migrate's id from its names
 * (tool_golang_lock_id), Flyway's from its table (tool_flyway_lock_id). A
 * session lock and a transaction lock of one key conflict, so the tool
 * waits for this write and this write for a running tool. drizzle-kit's
 * migrate takes none. */
static int take_lock(PGconn *conn, enum tool_kind kind, const char *schema, char *err, size_t errlen)
{
    char id[24] = "";
    if (kind == TOOL_PRISMA)
        snprintf(id, sizeof id, "72707369");
    else if (kind == TOOL_NODE_PG_MIGRATE)
        snprintf(id, sizeof id, "7241865325823964");
    else if (kind == TOOL_FLYWAY)
        tool_flyway_lock_id(schema, table_of(kind), id);
    else if (kind == TOOL_GOLANG_MIGRATE) {
        PGresult *r = engine_exec_params(conn, "SELECT current_database()", 0, NULL, err, errlen);
        if (!r)
            return -1;
        const char *names[3] = {PQgetvalue(r, 0, 0), schema, table_of(kind)};
        tool_golang_lock_id(names, 3, id);
        PQclear(r);
    }
    if (!id[0])
        return 0;
    const char *v[1] = {id};
    if (engine_exec_simple(conn, LOCK_WAIT, NULL, err, errlen) != 0)
        return -1;
    PGresult *r = engine_exec_params(conn, "SELECT pg_advisory_xact_lock($1::bigint)", 1, v, err, errlen);
    PQclear(r);
    return r ? 0 : -1;
}

/* The row of f, written as the tool writes it; *key the row's own key
 * for later (Prisma's id, Flyway's installed_rank, node-pg-migrate's id,
 * drizzle's hash, golang-migrate's version) and *prev what it replaced
 * (golang-migrate's version before, drizzle's created_at to find it). */
static int write_row(PGconn *conn, enum tool_kind kind, const char *q, const struct tool_file *f, char *key,
                     size_t keylen, char *prev, size_t prevlen, char *err, size_t errlen)
{
    char sql[700];
    const char *v[5] = {f->key, f->checksum, f->order, f->script, NULL};
    int n = 0;
    prev[0] = '\0';
    switch (kind) {
    case TOOL_DRIZZLE:
        /* dialect.ts migrate(): insert ("hash", "created_at") values (hash, folderMillis) */
        snprintf(sql, sizeof sql, "INSERT INTO %s (\"hash\", \"created_at\") VALUES ($1, $2::bigint) RETURNING hash", q);
        v[1] = f->order;
        n = 2;
        snprintf(prev, prevlen, "%s", f->order ? f->order : "");
        break;
    case TOOL_PRISMA:
        /* sql-schema-connector record_migration_started: a uuid v4 id, the
         * checksum, the name, started_at now(). finished_at is set now too:
         * a row not finished nor rolled back is a failed migration to
         * `prisma migrate deploy` (P3009), which would stop every deploy
         * of the team's pipeline while the file is in flight; finished, the
         * file is applied to deploy, which neither runs it again nor stops.
         * applied_steps_count stays 0 and logs says pgtandem has it in
         * flight until complete (record_successful_step). */
        snprintf(sql, sizeof sql, "INSERT INTO %s (id, checksum, migration_name, logs, started_at, finished_at,"
                 " applied_steps_count) VALUES (gen_random_uuid()::text, $2, $1, $3, now(), now(), 0) RETURNING id", q);
        v[2] = "pgtandem: in flight online (expanded, both shapes live); applied_steps_count becomes 1 at "
               "`pgtandem migrate complete`, and the row is removed by `pgtandem migrate rollback`";
        n = 3;
        break;
    case TOOL_FLYWAY:
        /* JdbcTableSchemaHistory.doAddAppliedMigration: the next
         * installed_rank, version, description, type 'SQL', script,
         * checksum, installed_by (the user), execution_time, success */
        snprintf(sql, sizeof sql, "INSERT INTO %s (installed_rank, version, description, type, script, checksum,"
                 " installed_by, execution_time, success) VALUES ((SELECT coalesce(max(installed_rank), 0) + 1 FROM %s),"
                 " $1, $3, 'SQL', $4, $2::int, current_user, 0, true) RETURNING installed_rank", q, q);
        n = 4;
        break;
    case TOOL_GOLANG_MIGRATE: {
        /* postgres.go SetVersion: TRUNCATE, then the one row */
        char get[256];
        snprintf(get, sizeof get, "SELECT version FROM %s LIMIT 1", q);
        PGresult *r = engine_exec_params(conn, get, 0, NULL, err, errlen);
        if (!r)
            return -1;
        if (PQntuples(r))
            snprintf(prev, prevlen, "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
        snprintf(sql, sizeof sql, "TRUNCATE %s; ", q);
        if (engine_exec_simple(conn, sql, NULL, err, errlen) != 0)
            return -1;
        snprintf(sql, sizeof sql, "INSERT INTO %s (version, dirty) VALUES ($1::bigint, false) RETURNING version", q);
        n = 1;
        break;
    }
    case TOOL_NODE_PG_MIGRATE:
        /* src/migration.ts: INSERT INTO table (name, run_on) VALUES (name, NOW()) */
        snprintf(sql, sizeof sql, "INSERT INTO %s (name, run_on) VALUES ($1, NOW()) RETURNING id", q);
        n = 1;
        break;
    case TOOL_NONE: return 0;
    }
    PGresult *r = engine_exec_params(conn, sql, n, v, err, errlen);
    if (!r)
        return -1;
    snprintf(key, keylen, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return 0;
}

static int write_file(PGconn *conn, enum tool_kind kind, const char *schema, const char *q, int exists,
                      const char *migration, struct tool_file *f, char *err, size_t errlen)
{
    char key[128], prev[64];
    if (engine_exec_simple(conn, "BEGIN", NULL, err, errlen) != 0)
        return -1;
    int rc = take_lock(conn, kind, schema, err, errlen);
    if (rc == 0 && !exists)
        rc = create_table(conn, kind, schema, q, err, errlen);
    if (rc == 0)
        rc = write_row(conn, kind, q, f, key, sizeof key, prev, sizeof prev, err, errlen);
    if (rc == 0) {
        const char *v[6] = {tool_kind_word(kind), f->name, migration, schema, key, prev[0] ? prev : NULL};
        PGresult *r = engine_exec_params(conn, "INSERT INTO pgtandem.tool_rows (tool, file, migration, schema_name,"
                                         " key, previous) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tool, file)"
                                         " DO UPDATE SET migration = $3, schema_name = $4, key = $5, previous = $6,"
                                         " written_at = now()", 6, v, err, errlen);
        rc = r ? 0 : -1;
        PQclear(r);
    }
    char ignored[256];
    if (rc == 0)
        rc = engine_exec_simple(conn, "COMMIT", NULL, err, errlen);
    else
        engine_exec_simple(conn, "ROLLBACK", NULL, ignored, sizeof ignored);
    if (rc == 0)
        f->written = 1;
    return rc;
}

static int write_rows(PGconn *conn, struct tool_history *th, const char *migration, int only, char *err,
                      size_t errlen);

int tool_history_started(PGconn *conn, struct tool_history *th, const char *migration, char *err, size_t errlen)
{
    return write_rows(conn, th, migration, 0, err, errlen);
}

int tool_history_started_one(PGconn *conn, struct tool_history *th, const char *migration, char *err,
                             size_t errlen)
{
    return write_rows(conn, th, migration, 1, err, errlen);
}

/* only: the file named migration alone; else every pending one up to it. */
static int write_rows(PGconn *conn, struct tool_history *th, const char *migration, int only, char *err,
                      size_t errlen)
{
    if (!th || th->kind == TOOL_NONE)
        return 0;
    size_t last = 0;
    while (last < th->n && strcmp(th->f[last].name, migration) != 0)
        last++;
    if (last == th->n)
        return 0;   /* not one of the directory's files (a merged name is its last file's) */
    char schema[128];
    if (schema_of(conn, th->kind, schema, sizeof schema, err, errlen) != 0 ||
        engine_exec_simple(conn, ROWS_DDL, NULL, err, errlen) != 0)
        return -1;
    char *q = qualified(schema, table_of(th->kind));
    if (!q)
        return snprintf(err, errlen, "out of memory"), -1;
    int rc = 0;
    for (size_t i = only ? last : 0; rc == 0 && i <= last; i++) {
        struct tool_file *f = &th->f[i];
        if (f->state != TOOL_PENDING || f->written)
            continue;
        int exists = table_exists(conn, schema, table_of(th->kind), err, errlen);
        rc = exists < 0 ? -1 : write_file(conn, th->kind, schema, q, exists, migration, f, err, errlen);
    }
    free(q);
    if (rc != 0) {
        char msg[1200];
        snprintf(msg, sizeof msg, "writing %s's row of %s in %s: %.900s", tool_kind_word(th->kind), migration,
                 tool_kind_table(th->kind), err);
        snprintf(err, errlen, "%s", msg);
    }
    return rc;
}

static enum tool_kind kind_of_word(const char *w)
{
    for (int k = TOOL_DRIZZLE; k <= TOOL_NODE_PG_MIGRATE; k++)
        if (!strcmp(w, tool_kind_word((enum tool_kind)k)))
            return (enum tool_kind)k;
    return TOOL_NONE;
}

/* Runs fmt (one %s: the tool's table) with $1 = the row's key, $2 = its
 * previous, for each row pgtandem wrote of migration, newest first, in
 * one transaction under the tool's lock. */
static int each_row(PGconn *conn, const char *migration, int complete, char *err, size_t errlen)
{
    int there = table_exists(conn, "pgtandem", "tool_rows", err, errlen);
    if (there <= 0)
        return there;
    const char *v[1] = {migration};
    PGresult *rows = engine_exec_params(conn, "SELECT tool, schema_name, key, previous FROM pgtandem.tool_rows"
                                        " WHERE migration = $1 ORDER BY written_at DESC, file DESC", 1, v, err, errlen);
    if (!rows)
        return -1;
    int rc = engine_exec_simple(conn, "BEGIN", NULL, err, errlen);
    for (int k = 0; rc == 0 && k < PQntuples(rows); k++) {
        enum tool_kind kind = kind_of_word(PQgetvalue(rows, k, 0));
        const char *schema = PQgetvalue(rows, k, 1);
        const char *kv[2] = {PQgetvalue(rows, k, 2), PQgetisnull(rows, k, 3) ? NULL : PQgetvalue(rows, k, 3)};
        char *q = qualified(schema, table_of(kind));
        char sql[600] = "";
        int exists = q ? table_exists(conn, schema, table_of(kind), err, errlen) : -1;
        if (exists <= 0) {
            free(q);
            rc = exists < 0 ? -1 : 0;
            continue;
        }
        rc = take_lock(conn, kind, schema, err, errlen);
        if (complete && kind == TOOL_PRISMA)
            /* record_successful_step, then record_migration_finished: one
             * step per migration.sql */
            snprintf(sql, sizeof sql, "UPDATE %s SET finished_at = coalesce(finished_at, now()),"
                     " applied_steps_count = 1, logs = NULL WHERE id = $1 AND $2::text IS NULL"
                     " AND (finished_at IS NULL OR applied_steps_count = 0)", q);
        else if (!complete && kind == TOOL_DRIZZLE)
            snprintf(sql, sizeof sql, "DELETE FROM %s WHERE hash = $1 AND created_at = $2::bigint", q);
        else if (!complete && kind == TOOL_PRISMA)
            snprintf(sql, sizeof sql, "DELETE FROM %s WHERE id = $1 AND $2::text IS NULL", q);
        else if (!complete && kind == TOOL_FLYWAY)
            snprintf(sql, sizeof sql, "DELETE FROM %s WHERE installed_rank = $1::int AND $2::text IS NULL", q);
        else if (!complete && kind == TOOL_NODE_PG_MIGRATE)
            snprintf(sql, sizeof sql, "DELETE FROM %s WHERE id = $1::int AND $2::text IS NULL", q);
        else if (!complete && kind == TOOL_GOLANG_MIGRATE)
            /* back to the version before, as SetVersion writes one; none
             * before: the table empty, as migrate leaves it at NilVersion */
            snprintf(sql, sizeof sql, "WITH d AS (DELETE FROM %s WHERE version = $1::bigint RETURNING 1)"
                     " INSERT INTO %s (version, dirty) SELECT $2::bigint, false FROM d WHERE $2::text IS NOT NULL", q, q);
        free(q);
        if (rc == 0 && sql[0]) {
            PGresult *r = engine_exec_params(conn, sql, 2, kv, err, errlen);
            rc = r ? 0 : -1;
            PQclear(r);
        }
    }
    PQclear(rows);
    if (rc == 0 && !complete) {
        PGresult *r = engine_exec_params(conn, "DELETE FROM pgtandem.tool_rows WHERE migration = $1", 1, v, err,
                                         errlen);
        rc = r ? 0 : -1;
        PQclear(r);
    }
    char ignored[256];
    if (rc == 0)
        rc = engine_exec_simple(conn, "COMMIT", NULL, err, errlen);
    else
        engine_exec_simple(conn, "ROLLBACK", NULL, ignored, sizeof ignored);
    return rc;
}

int tool_history_completed(PGconn *conn, const char *migration, char *err, size_t errlen)
{
    return each_row(conn, migration, 1, err, errlen);
}

int tool_history_catch_up(PGconn *conn, char *err, size_t errlen)
{
    int there = table_exists(conn, "pgtandem", "tool_rows", err, errlen);
    if (there <= 0)
        return there;
    const char *v[3] = {mig_status_word(MIG_ST_COMPLETED), mig_status_word(MIG_ST_ROLLED_BACK),
                        tool_kind_word(TOOL_PRISMA)};
    PGresult *r = engine_exec_params(conn, "SELECT DISTINCT t.migration, m.status = $1 FROM pgtandem.tool_rows t"
                                     " JOIN pgtandem.migrations m ON m.name = t.migration"
                                     " WHERE m.status = $2 OR (m.status = $1 AND t.tool = $3)", 3, v, err, errlen);
    if (!r)
        return -1;
    int rc = 0;
    for (int k = 0; rc == 0 && k < PQntuples(r); k++)
        rc = each_row(conn, PQgetvalue(r, k, 0), PQgetvalue(r, k, 1)[0] == 't', err, errlen);
    PQclear(r);
    return rc;
}

int tool_history_rolled_back(PGconn *conn, const char *migration, char *err, size_t errlen)
{
    return each_row(conn, migration, 0, err, errlen);
}

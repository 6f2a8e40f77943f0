/* The engine's state SQL (see migration_state.h). */
#include "migration_state.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migration_lifecycle.h"
#include "migration_sql.h"


/* The fleet's tables live beside the migrations': pgtandem.proxies (one
 * row per proxy, what it is and what it serves), pgtandem.fleet_leases
 * (one row per proxy, its lease, renewed by its heartbeat) and pgtandem.fleet_holds (one row
 * per fleet-wide hold of a cutover; see fleet.h). The status column's check
 * lists the statuses of migration_lifecycle.h; a state schema made before
 * one of them existed gets the wider check once ('switched' came with
 * revert after complete). */
int mig_state_exists(PGconn *conn)
{
    PGresult *r = PQexec(conn, "SELECT to_regclass('pgtandem.migrations') IS NOT NULL");
    int ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return ok;
}

char *mig_state_schema_sql(void)
{
    char statuses[MIG_STATUS_SQL_LIST_MAX];
    if (mig_status_sql_list(MIG_SET_EVERY, statuses, sizeof statuses) < 0)
        return NULL;
    struct mig_str s = {0};
    mig_str_add(&s,
        "SELECT pg_advisory_xact_lock(" ENGINE_LOCK_KEY " - 1);"
        "CREATE SCHEMA IF NOT EXISTS pgtandem;"
        "CREATE TABLE IF NOT EXISTS pgtandem.migrations ("
        "  name text PRIMARY KEY, parent text, checksum text NOT NULL, migration text NOT NULL,");
    mig_str_addf(&s, "  plan text, status text NOT NULL CHECK (status IN (%s)),", statuses);
    mig_str_add(&s,
        "  started_at timestamptz NOT NULL DEFAULT now(), backfilled_at timestamptz,"
        "  completed_at timestamptz, rolled_back_at timestamptz,"
        "  updated_at timestamptz NOT NULL DEFAULT now(), error text,"
        "  contract_attempts int, contract_lock_wait_ms float8);"
        "CREATE TABLE IF NOT EXISTS pgtandem.backfill_progress ("
        MIG_BACKFILL_PROGRESS_COLUMNS(" REFERENCES pgtandem.migrations (name) ON DELETE CASCADE") ");"
        "ALTER TABLE pgtandem.migrations ADD COLUMN IF NOT EXISTS throttle jsonb;"
        /* how many steps after the contract have run (mig_state_post_done_sql);
         * added once, without taking the table's lock when it is there */
        "DO $post$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'pgtandem.migrations'::regclass"
        "  AND attname = 'post_done' AND NOT attisdropped) THEN"
        "  ALTER TABLE pgtandem.migrations ADD COLUMN post_done int; END IF; END $post$;"
        /* the record a rollback is checked against (shape_record.c) */
        "DO $rec$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'pgtandem.migrations'::regclass"
        "  AND attname = 'shape_before' AND NOT attisdropped) THEN"
        "  ALTER TABLE pgtandem.migrations ADD COLUMN shape_before text; END IF; END $rec$;");
    mig_str_add(&s,
        /* A checkpoint table made before key ranges: its rows become range 0 of
         * their table with no bounds, the whole table, as they were. */
        "DO $pgt$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'pgtandem.backfill_progress'::regclass"
        "   AND attname = 'range_no' AND NOT attisdropped) THEN"
        "  ALTER TABLE pgtandem.backfill_progress ADD COLUMN range_no int NOT NULL DEFAULT 0,"
        "    ADD COLUMN range_lo text, ADD COLUMN range_hi text;"
        "  ALTER TABLE pgtandem.backfill_progress DROP CONSTRAINT backfill_progress_pkey,"
        "    ADD PRIMARY KEY (migration, schema_name, table_name, range_no);"
        " END IF; END $pgt$;");
    mig_str_addf(&s,
        "DO $pgt$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE conrelid = 'pgtandem.migrations'::regclass"
        "   AND contype = 'c' AND (SELECT bool_and(pg_get_constraintdef(c.oid) LIKE '%%''' || w || '''%%')"
        "     FROM unnest(ARRAY[%s]) w)) THEN"
        "  ALTER TABLE pgtandem.migrations DROP CONSTRAINT IF EXISTS migrations_status_check;"
        "  ALTER TABLE pgtandem.migrations ADD CONSTRAINT migrations_status_check CHECK (status IN (%s));"
        " END IF; END $pgt$;", statuses, statuses);
    mig_str_add(&s,
        "CREATE TABLE IF NOT EXISTS pgtandem.proxies ("
        "  id text PRIMARY KEY, slot int NOT NULL, host text NOT NULL, listen text NOT NULL, admin text,"
        "  peer text, version text NOT NULL, pid int NOT NULL, started_at timestamptz NOT NULL,"
        "  heartbeat_at timestamptz NOT NULL, held_epoch bigint, sessions jsonb, backend_pids bigint[],"
        "  lease_ms int NOT NULL DEFAULT 3000);"
        /* Backend PIDs run up to 2^32 - 1 behind an edge that makes them up;
         * tables made as int[] are widened once. */
        "DO $widen$ BEGIN IF (SELECT atttypid FROM pg_attribute WHERE attrelid = 'pgtandem.proxies'::regclass"
        "  AND attname = 'backend_pids') = 'int4[]'::regtype THEN"
        "  ALTER TABLE pgtandem.proxies ALTER COLUMN backend_pids TYPE bigint[]; END IF; END $widen$;"
        /* The key a proxy signs its peer messages with (fleet_direct.h);
         * added once, without taking the table's lock when it is there. */
        "DO $key$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'pgtandem.proxies'::regclass"
        "  AND attname = 'peer_key' AND NOT attisdropped) THEN"
        "  ALTER TABLE pgtandem.proxies ADD COLUMN peer_key text; END IF; END $key$;"
        /* The migrations a proxy routes, as of its last heartbeat: a
         * --db start waits for every live proxy to route it before its
         * expand's DDL (mig_state_unrouted_sql). Added once, as above. */
        "DO $routes$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'pgtandem.proxies'::regclass"
        "  AND attname = 'routes' AND NOT attisdropped) THEN"
        "  ALTER TABLE pgtandem.proxies ADD COLUMN routes jsonb; END IF; END $routes$;"
        "CREATE TABLE IF NOT EXISTS pgtandem.fleet_leases (id text PRIMARY KEY, renewed_at timestamptz NOT NULL);"
        "CREATE TABLE IF NOT EXISTS pgtandem.fleet_holds ("
        "  epoch bigserial PRIMARY KEY, migration text NOT NULL, coordinator text NOT NULL,"
        "  drain_ms int NOT NULL, hold_ms int NOT NULL,"
        "  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),"
        "  released_at timestamptz, committed boolean)");
    return mig_str_take(&s);
}

#define FLEET_LIVE_SQL(renewed_at)                                                                          \
    "SELECT CASE WHEN to_regclass('pgtandem.proxies') IS NULL THEN '[]'::json ELSE"                        \
    " (SELECT coalesce(json_agg(json_build_object('id', id, 'listen', listen, 'admin', admin, 'sessions', sessions," \
    "   'heartbeat_age_ms', (extract(epoch FROM clock_timestamp() - r.at) * 1000)::int)"                   \
    "   ORDER BY r.at DESC), '[]') FROM pgtandem.proxies p, LATERAL (SELECT " renewed_at " AS at) r"       \
    "   WHERE r.at > clock_timestamp() - make_interval(secs => p.lease_ms / 1000.0)) END"

const char MIG_STATE_FLEET_SQL[] = FLEET_LIVE_SQL(MIG_PROXY_RENEWED_AT("p"));

const char MIG_STATE_UNROUTED_SQL[] =
    "SELECT coalesce(string_agg(p.id, ', ' ORDER BY p.id), '') FROM pgtandem.proxies p"
    " WHERE " MIG_PROXY_RENEWED_AT("p") " > clock_timestamp() - make_interval(secs => p.lease_ms / 1000.0)"
    "   AND NOT coalesce(p.routes ? $1, false)";
const char MIG_STATE_FLEET_BEFORE_LEASES_SQL[] = FLEET_LIVE_SQL("p.heartbeat_at");

const char MIG_STATE_LOAD_SQL[] =
    "SELECT plan, status, migration, throttle::text, error,"
    "       (SELECT coalesce(sum(p.rows_done), 0) FROM pgtandem.backfill_progress p WHERE p.migration = m.name),"
    "       post_done IS NOT NULL,"
    "       (extract(epoch FROM clock_timestamp() - updated_at) * 1000)::bigint"
    "  FROM pgtandem.migrations m WHERE name = $1";

const char MIG_STATE_LATEST_SQL[] =
    "SELECT m.name, m.status, (SELECT json_agg(n.name) FROM (SELECT name FROM pgtandem.migrations"
    " WHERE status <> ALL($1::text[]) ORDER BY started_at DESC LIMIT 64) n)"
    " FROM (" MIG_STATE_FOLLOWED_SQL("$1") ") m";

const char MIG_STATE_SAVE_THROTTLE_SQL[] =
    "UPDATE pgtandem.migrations SET throttle = $2::jsonb, updated_at = now() WHERE name = $1";

const char MIG_STATE_READ_THROTTLE_SQL[] = "SELECT throttle::text FROM pgtandem.migrations WHERE name = $1";

const char MIG_STATE_AGE_SQL[] =
    "SELECT status, (extract(epoch FROM clock_timestamp() - updated_at) * 1000)::bigint"
    "  FROM pgtandem.migrations WHERE name = $1";

const char MIG_STATE_PAUSED_SQL[] =
    "SELECT coalesce(bool_or(paused), false) FROM pgtandem.backfill_progress WHERE migration = $1";

/* CASE runs its arms in order: the migration's lock is asked for only
 * once the engine lock is held, and never kept */
/* A single bigint key shows in pg_locks as classid (high 32 bits), objid
 * (low 32 bits), objsubid 1. */
const char MIG_STATE_ENGINE_LOCK_HELD_SQL[] =
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND ((classid::bigint << 32) | objid::bigint) = " ENGINE_LOCK_KEY ")";

const char MIG_STATE_TRY_LOCK_SQL[] =
    "SELECT CASE WHEN NOT pg_try_advisory_lock(" ENGINE_LOCK_KEY ") THEN false"
    "  WHEN $1::int IS NULL THEN true"
    "  WHEN pg_try_advisory_lock" MIGRATION_LOCK_ARGS("$1::int")
    "    THEN pg_advisory_unlock" MIGRATION_LOCK_ARGS("$1::int")
    "  ELSE NOT pg_advisory_unlock(" ENGINE_LOCK_KEY ") END";

const char MIG_STATE_UNLOCK_SQL[] = "SELECT pg_advisory_unlock_all()";

/* client_connection_check_interval (Postgres 14+) lets a backend notice,
 * while it waits for a lock, that the proxy that sent the statement died. */
const char MIG_STATE_SESSION_SQL[] =
    "SET client_connection_check_interval = '1s'; SET application_name = 'pgtandem engine'";

static void add_literal(PGconn *conn, struct mig_str *s, const char *v)
{
    char *lit = v ? PQescapeLiteral(conn, v, strlen(v)) : NULL;
    s->oom |= v && !lit; /* mig_str_take then gives NULL */
    mig_str_add(s, lit ? lit : "NULL");
    PQfreemem(lit);
}

/* A merged migration's migrations, each recorded as completed with its own
 * file; the last is the merged one's own row (updated just before), which
 * gets its head file's checksum, so a chain lints clean against it. */
static void add_merged_rows(PGconn *conn, struct mig_str *s, const char *merges_json)
{
    json_t *merges = merges_json ? json_loads(merges_json, 0, NULL) : NULL;
    if (!json_is_array(merges)) {
        json_decref(merges);
        return;
    }
        mig_str_add(s, ";\nINSERT INTO pgtandem.migrations AS m (name, parent, checksum, migration, status,"
                   " completed_at) VALUES ");
    size_t i;
    json_t *e;
    json_array_foreach(merges, i, e) {
        mig_str_add(s, i ? ", (" : "(");
        add_literal(conn, s, json_string_value(json_object_get(e, "name")));
        mig_str_add(s, ", ");
        add_literal(conn, s, json_string_value(json_object_get(e, "parent")));
        mig_str_add(s, ", ");
        add_literal(conn, s, json_string_value(json_object_get(e, "checksum")));
        mig_str_add(s, ", ");
        add_literal(conn, s, json_string_value(json_object_get(e, "json")));
        mig_str_addf(s, ", '%s', now())", mig_status_word(MIG_ST_COMPLETED));
    }
    mig_str_addf(s, " ON CONFLICT (name) DO UPDATE SET status = '%s', parent = EXCLUDED.parent,"
                    " checksum = EXCLUDED.checksum, migration = EXCLUDED.migration, completed_at = now(),"
                    " updated_at = now()", mig_status_word(MIG_ST_COMPLETED));
    json_decref(merges);
}

/* The statement's end: the news notified with the commit, or only the row
 * returned (the caller tells the fleet itself, after its hold). */
static void add_news(struct mig_str *s, int notify)
{
    mig_str_add(s, notify ? " RETURNING name, status)" MIG_STATE_NOTIFY_FROM("u")
                          : " RETURNING name, status) SELECT name, status FROM u");
}

char *mig_state_status_sql(PGconn *conn, const char *name, enum mig_status status, int notify)
{
    struct mig_str s = {0};
    mig_str_add(&s, "WITH u AS (UPDATE pgtandem.migrations SET status = ");
    add_literal(conn, &s, mig_status_word(status));
    mig_str_add(&s, ", updated_at = now(), error = NULL WHERE name = ");
    add_literal(conn, &s, name);
    add_news(&s, notify);
    return mig_str_take(&s);
}

char *mig_state_completed_sql(PGconn *conn, const char *name, const char *merges, int attempts,
                              double lock_wait_ms, size_t post_steps, int notify)
{
    struct mig_str s = {0};
    mig_str_addf(&s, "WITH u AS (UPDATE pgtandem.migrations SET status = '%s', completed_at = now(),"
                 " updated_at = now(), error = NULL, contract_attempts = %d, contract_lock_wait_ms = %.1f,"
                 " post_done = %s WHERE name = ", mig_status_word(MIG_ST_COMPLETED), attempts, lock_wait_ms,
                 post_steps > 0 ? "0" : "NULL");
    add_literal(conn, &s, name);
    add_news(&s, notify);
    add_merged_rows(conn, &s, merges);
    return mig_str_take(&s);
}

char *mig_state_post_done_sql(PGconn *conn, const char *name, size_t done, size_t total)
{
    struct mig_str s = {0};
    if (done < total)
        mig_str_addf(&s, "UPDATE pgtandem.migrations SET post_done = %zu, updated_at = now() WHERE name = ", done);
    else
        mig_str_add(&s, "UPDATE pgtandem.migrations SET post_done = NULL, updated_at = now() WHERE name = ");
    add_literal(conn, &s, name);
    return mig_str_take(&s);
}

void mig_lock_key(const char *migration, char *out, size_t outlen)
{
    uint32_t h = 2166136261u; /* FNV-1a, kept non-negative: an oid in pg_locks */
    for (const unsigned char *p = (const unsigned char *)(migration ? migration : ""); *p; p++)
        h = (h ^ *p) * 16777619u;
    snprintf(out, outlen, "%d", (int)(h & 0x7fffffffu));
}

void mig_backfill_workers_sql(const char *migration, int gone, char *out, size_t outlen)
{
    char key[16];
    mig_lock_key(migration, key, sizeof key);
    if (gone)
        snprintf(out, outlen, "SELECT pg_advisory_lock(" BACKFILL_WORKERS_CLASS ", %s), pg_advisory_unlock("
                 BACKFILL_WORKERS_CLASS ", %s)", key, key);
    else
        snprintf(out, outlen, "SELECT pg_advisory_lock_shared(" BACKFILL_WORKERS_CLASS ", %s)", key);
}

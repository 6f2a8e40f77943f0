/* The fleet (see fleet.h): membership, following the migration,
 * and both sides of the fleet-wide hold, on one non-blocking connection of
 * its own. One statement is in flight at a time; what waits is a flag, and
 * pump() sends the most urgent one (releases before acknowledgements
 * before the heartbeat), so a hold never waits behind bookkeeping.
 *
 * The hold is also told directly on the peer port (fleet_direct.h), which
 * saves the NOTIFY round trips where it arrives first; everything a
 * decision rests on is still in the database: a participant's own
 * acknowledgement in its row, the hold's row and its lock. */
#include "fleet.h"

#include <event2/event.h>
#include <jansson.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fleet_direct.h"
#include "fleet_lease.h"
#include "log.h"
#include "migration_lifecycle.h"
#include "migration_state.h"
#include "pgasync.h"
#include "relay_control.h"
#include "version.h"

#define CHANNEL_MIGRATIONS "pgtandem_migrations"
#define CHANNEL_FLEET "pgtandem_fleet"
#define RECONNECT_MS 500
#define ACK_RECHECK_MS 50
#define MAX_SLOT 63 /* PEER_MAX_SLOT: the slot is 6 bits of the cancel key */

enum fleet_link { LINK_DOWN, LINK_CONNECTING, LINK_SETUP, LINK_REGISTERING, LINK_UP };

/* What waits for the connection, most urgent first. */
enum fleet_job { JOB_LEAVE, JOB_RELEASE, JOB_ABANDON, JOB_ACK, JOB_HOLD, JOB_LEASE, JOB_ACK_CHECK, JOB_HEARTBEAT,
                 NJOBS };

/* How a proxy learnt of a hold, an acknowledgement or a release first. */
enum fleet_via { VIA_DATABASE, VIA_PEER, VIA_SELF, NVIA };
static const char *const via_names[NVIA] = {"database", "peer", "self"};
_Static_assert(NVIA == 3, "struct fleet_metrics counts three ways");

/* This proxy as the cutover's coordinator. */
struct coordinator_hold {
    int active;               /* waiting for acknowledgements */
    long long epoch;          /* 0 until the hold's row exists */
    long long release_epoch;  /* to be released (may be set before the row exists) */
    int release_pending;      /* release once the epoch is known */
    char migration[128];
    int drain_ms, hold_ms;
    char missing[512];        /* proxies that have not acknowledged */
    json_t *expected;         /* ids live when the hold began, not yet acknowledged */
    int acks[NVIA];           /* acknowledgements counted, by how they came */
    uint64_t written_us;      /* when the hold's row was known written */
    fleet_announced_fn announced;
    fleet_held_fn done;
    void *ctx;
    struct event *timeout, *recheck;
};

/* This proxy holding for another's cutover. A hold learnt of (a NOTIFY,
 * a peer message) is served at once but counts for the commit only once
 * this proxy's acknowledgement has found its row open in the database
 * (`confirmed`); one whose row is not there was never asked for by a
 * coordinator and ends as soon as that is known, with nothing to undo. */
struct participant_hold {
    int active;
    int drained;              /* relay drained: acknowledged (or about to) */
    int confirmed;            /* our acknowledgement found the row open and is in our row */
    long long epoch;          /* the hold being served */
    long long last_epoch;     /* the newest hold confirmed, served or not */
    int drain_ms, hold_ms;
    struct event *deadline;
    int abandoning;           /* closing it ourselves (JOB_ABANDON sent) */
    enum fleet_via learned;   /* how we first heard of it */
    uint64_t learned_us, drained_us, acked_us; /* its steps, for the log line at its end (0: not reached) */
    char coordinator[96];
    long long acking;         /* the epoch of the acknowledgement in flight (0: none) */
    long long next_epoch;     /* a newer hold that waits for this one to close (0: none) */
    int next_drain_ms, next_hold_ms;
    enum fleet_via next_learned;
    char next_coordinator[96];
};

/* The last hold this proxy served as a participant, for GET /status. */
struct last_hold {
    long long epoch;
    enum fleet_via learned, released;
    int committed, confirmed;
    double held_ms;
};

struct fleet {
    struct event_base *base;
    struct relay *relay;
    struct pgasync db;
    enum fleet_link link;
    char *engine_db;
    char id[96], host[64], listen[160], admin[160];
    int lease_ms, heartbeat_ms, slot;
    int reconnects;
    unsigned jobs;                   /* bit per enum fleet_job */
    struct event *heartbeat_timer, *reconnect_timer;
    uint64_t lease_sent_us;          /* when the lease's renewal in flight (or the last one) was sent */
    uint64_t renewed_us;             /* sent time of the renewal that last renewed the lease; 0: none */
    unsigned long long heartbeat_failures; /* counted when the next one is due (heartbeat_cb) */
    int heartbeat_answered_ok;       /* the last renewal sent was answered as it should be */
    json_t *members, *bypassing;     /* as of the last heartbeat */
    char migration[128], status[32]; /* the most recent migration */
    pgasync_done_fn handler;         /* of the statement in flight */
    fleet_migration_fn on_migration;
    void *on_migration_ctx;
    struct coordinator_hold co;
    struct participant_hold part;
    struct fleet_direct *direct;     /* NULL: no peer messages (out of memory at start) */
    struct last_hold last;
    unsigned long long holds_learned[NVIA], holds_released[NVIA], acks[NVIA];
    unsigned long long holds_unconfirmed;
};

static void pump(struct fleet *f);
static void connect_now(struct fleet *f);

/* ---- SQL ---- */

static const char SETUP_SQL_TAIL[] =
    ";SET synchronous_commit = off; SET application_name = 'pgtandem fleet';"
    " SET client_connection_check_interval = '1s';"
    " LISTEN " CHANNEL_MIGRATIONS "; LISTEN " CHANNEL_FLEET;

/* A proxy's lease is its row in pgtandem.fleet_leases (migration_state.h):
 * renewed by a statement that reads and locks nothing else, so that a lock
 * on pgtandem.proxies (an operator's SELECT ... FOR UPDATE) delays no
 * renewal, and no proxy fences its clients for a lease it still holds. */
#define RENEWED_AT(alias) MIG_PROXY_RENEWED_AT(alias)
#define LIVE(alias, param) \
    RENEWED_AT(alias) " > clock_timestamp() - make_interval(secs => " param "::int / 1000.0)"

/* The slot (1..63) goes into cancel keys; a live proxy keeps its own, a
 * restarted one gets the smallest free. Rows dead for long are dropped. */
static const char REGISTER_SQL[] =
    "WITH gc AS (DELETE FROM pgtandem.proxies p WHERE " RENEWED_AT("p") " < clock_timestamp()"
    "            - make_interval(secs => greatest(60, $7::int / 100.0)) AND id <> $1 RETURNING id),"
    " gc_leases AS (DELETE FROM pgtandem.fleet_leases WHERE id IN (SELECT id FROM gc)),"
    " lease AS (INSERT INTO pgtandem.fleet_leases (id, renewed_at) VALUES ($1, clock_timestamp())"
    "           ON CONFLICT (id) DO UPDATE SET renewed_at = EXCLUDED.renewed_at),"
    " free AS (SELECT min(s) AS slot FROM generate_series(1, 63) s WHERE s NOT IN"
    "          (SELECT slot FROM pgtandem.proxies q WHERE id <> $1 AND " LIVE("q", "$7") "))"
    " INSERT INTO pgtandem.proxies AS p (id, slot, host, listen, admin, version, pid, started_at, heartbeat_at,"
    "                                  lease_ms, peer, peer_key)"
    " SELECT $1, coalesce(free.slot, 0), $2, $3, $4, $5, $6::int, clock_timestamp(), clock_timestamp(), $7::int,"
    "        nullif($8, ''), nullif($9, '') FROM free"
    " ON CONFLICT (id) DO UPDATE SET heartbeat_at = clock_timestamp(), listen = EXCLUDED.listen, peer = EXCLUDED.peer,"
    "   peer_key = EXCLUDED.peer_key, admin = EXCLUDED.admin, slot = CASE WHEN p.slot IN (SELECT slot FROM pgtandem.proxies q WHERE q.id <> $1"
    "     AND " LIVE("q", "$7") ")"
    "     THEN EXCLUDED.slot ELSE p.slot END"
    " RETURNING slot";

/* Client backends on this database that no live proxy claims; pgtandem's
 * own connections name themselves "pgtandem ..." and are left out. */
#define BYPASSING_FROM(lease)                                                                              \
    " FROM pg_stat_activity a"                                                                             \
    " WHERE a.datname = current_database() AND a.backend_type = 'client backend'"                         \
    "   AND a.pid <> pg_backend_pid() AND coalesce(a.application_name, '') NOT LIKE 'pgtandem%'"           \
    "   AND NOT EXISTS (SELECT 1 FROM pgtandem.proxies p WHERE a.pid = ANY (p.backend_pids) AND "          \
    LIVE("p", lease) ")"

#define BYPASSING_WHO                                                                                      \
    "a.pid, coalesce(nullif(a.application_name, ''), a.usename::text, '?') AS who,"                        \
    " coalesce(host(a.client_addr), 'local') AS client, coalesce(a.state, '') AS state,"                  \
    " coalesce((extract(epoch FROM clock_timestamp() - a.xact_start) * 1000)::bigint, 0) AS xact_ms"

/* tables: a text[] expression; lease: an int expression. */
#define BYPASSING_SELECT(tables, lease)                                                                    \
    "SELECT " BYPASSING_WHO ","                                                                            \
    "       a.xact_start IS NOT NULL"                                                                      \
    "       OR EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'relation'"           \
    "                  AND l.relation IN (SELECT to_regclass(t) FROM unnest(" tables ") t))"               \
    "       OR EXISTS (SELECT 1 FROM unnest(" tables ") t JOIN pg_class c ON c.oid = to_regclass(t)"       \
    "                  WHERE a.query ~* ('\\m' || regexp_replace(c.relname, '([^[:alnum:]_])', '\\\\\\1', 'g')" \
    "                                      || '\\M')),"                                                     \
    "       left(a.query, 160)" BYPASSING_FROM(lease) " ORDER BY a.pid LIMIT 20"

const char FLEET_BYPASSING_SQL[] = BYPASSING_SELECT("$1::text[]", "$2");

/* The lease's renewal: our row of pgtandem.fleet_leases and nothing else. */
static const char LEASE_SQL[] =
    "INSERT INTO pgtandem.fleet_leases (id, renewed_at) VALUES ($1, clock_timestamp())"
    " ON CONFLICT (id) DO UPDATE SET renewed_at = EXCLUDED.renewed_at";

/* The heartbeat's bookkeeping, after the renewal: what this proxy serves
 * goes into its row unless someone else holds that row locked (it is
 * written again at the next heartbeat; until then the fleet sees the
 * older list, and a session missing from it can only look like one that
 * bypasses the fleet, which stops a cutover rather than lets one through);
 * the fleet, the migration and the newest hold are read. */
static const char HEARTBEAT_SQL[] =
    "WITH mine AS (SELECT id FROM pgtandem.proxies WHERE id = $1 FOR NO KEY UPDATE SKIP LOCKED),"
    " hb AS (UPDATE pgtandem.proxies SET heartbeat_at = clock_timestamp(), sessions = $2::jsonb,"
    "        backend_pids = ARRAY(SELECT jsonb_array_elements_text($3::jsonb)::bigint)"
    "        WHERE id = (SELECT id FROM mine) RETURNING id)"
    " SELECT (SELECT count(*) FROM pgtandem.proxies WHERE id = $1),"
    "  (SELECT coalesce(json_agg(json_build_object('id', p.id, 'slot', p.slot, 'host', p.host, 'listen', p.listen,"
    "     'admin', p.admin, 'peer', p.peer, 'version', p.version, 'pid', p.pid, 'started_at', p.started_at,"
    "     'heartbeat_age_ms', (extract(epoch FROM clock_timestamp() - " RENEWED_AT("p") ") * 1000)::int,"
    "     'live', p.id = $1 OR " LIVE("p", "$4") ", 'sessions', p.sessions) ORDER BY p.started_at), '[]')"
    "     FROM pgtandem.proxies p),"
    "  (SELECT coalesce(json_agg(b ORDER BY b.pid), '[]') FROM (SELECT " BYPASSING_WHO BYPASSING_FROM("$4")
    /* the statement sees our row as it was before this UPDATE */
    "     AND a.pid NOT IN (SELECT jsonb_array_elements_text($3::jsonb)::bigint) LIMIT 20) b),"
    "  m.name, m.status, h.epoch, h.coordinator, h.drain_ms, h.hold_ms,"
    "  (extract(epoch FROM clock_timestamp() - h.created_at) * 1000)::int, h.released_at IS NOT NULL,"
    "  h.committed IS TRUE, EXISTS (SELECT 1 FROM pgtandem.proxies c WHERE c.id = h.coordinator"
    "    AND " RENEWED_AT("c") " > clock_timestamp() - make_interval(secs => c.lease_ms / 1000.0))"
    " FROM (SELECT 1) one"
    " LEFT JOIN LATERAL (SELECT name, status FROM pgtandem.migrations ORDER BY started_at DESC LIMIT 1) m ON true"
    " LEFT JOIN LATERAL (SELECT * FROM pgtandem.fleet_holds ORDER BY epoch DESC LIMIT 1) h ON true";

/* The coordinator's own row says it holds too, with its sessions' PIDs.
 * It reads the others' peer addresses and keys with the hold, so they are
 * told directly too. */
static const char HOLD_SQL[] =
    "WITH h AS (INSERT INTO pgtandem.fleet_holds (migration, coordinator, drain_ms, hold_ms)"
    "           VALUES ($1, $2, $3::int, $4::int) RETURNING epoch),"
    " u AS (UPDATE pgtandem.proxies SET held_epoch = (SELECT epoch FROM h),"
    "       backend_pids = ARRAY(SELECT jsonb_array_elements_text($5::jsonb)::bigint) WHERE id = $2)"
    " SELECT epoch, pg_notify('" CHANNEL_FLEET "', format('hold %s %s %s %s', epoch, $3, $4, $2)),"
    "  (SELECT coalesce(json_agg(json_build_object('id', p.id, 'peer', p.peer, 'key', p.peer_key)), '[]')"
    "     FROM pgtandem.proxies p WHERE p.id <> $2 AND " LIVE("p", "$6") ")"
    " FROM h";

static const char LEAVE_SQL[] = "DELETE FROM pgtandem.proxies WHERE id = $1";

static const char ACK_CHECK_SQL[] =
    "SELECT string_agg(id, ', ' ORDER BY id) FROM pgtandem.proxies p"
    " WHERE id <> $1 AND held_epoch IS DISTINCT FROM $3::bigint AND " LIVE("p", "$2");

/* Acknowledges only a hold whose row is open: a hold message that no
 * coordinator wrote (a forged NOTIFY, a replayed or forged peer message)
 * must not leave an epoch in our row that a later hold could take for our
 * acknowledgement. Answers (acknowledged, the row exists, it is released,
 * it committed). */
static const char ACK_SQL[] =
    "WITH h AS (SELECT released_at IS NOT NULL AS released, committed IS TRUE AS committed"
    "           FROM pgtandem.fleet_holds WHERE epoch = $2::bigint),"
    " u AS (UPDATE pgtandem.proxies SET held_epoch = $2::bigint, heartbeat_at = clock_timestamp(),"
    "       backend_pids = ARRAY(SELECT jsonb_array_elements_text($3::jsonb)::bigint)"
    "       WHERE id = $1 AND EXISTS (SELECT 1 FROM h WHERE NOT released) RETURNING id)"
    " SELECT EXISTS (SELECT 1 FROM u), EXISTS (SELECT 1 FROM h), coalesce((SELECT released FROM h), false),"
    "  coalesce((SELECT committed FROM h), false),"
    "  CASE WHEN EXISTS (SELECT 1 FROM u) THEN pg_notify('" CHANNEL_FLEET "', format('ack %s %s', $2, $1)) END";

/* Closing a hold waits for a contract in flight (it holds the row) and
 * then reads from the row whether that contract committed. */
static const char RELEASE_SQL[] =
    "WITH u AS (UPDATE pgtandem.fleet_holds SET released_at = clock_timestamp()"
    "           WHERE epoch = $1::bigint AND released_at IS NULL RETURNING committed),"
    " c AS (SELECT coalesce((SELECT committed FROM u),"
    "        (SELECT committed FROM pgtandem.fleet_holds WHERE epoch = $1::bigint), false) AS committed)"
    " SELECT c.committed, pg_notify('" CHANNEL_FLEET "',"
    "        format('release %s %s', $1, CASE WHEN c.committed THEN 1 ELSE 0 END)) FROM c";

/* ---- small helpers ---- */

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* A timer that cannot be set fires at once: every timer here bounds a
 * wait (a lease, a hold, a reconnect), and ending a wait early is safe
 * where waiting forever is not. */
static void add_timer(struct event *ev, long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    if (evtimer_add(ev, &tv) != 0) {
        log_error("fleet: could not set a %ld ms timer; it fires now", ms);
        event_active(ev, EV_TIMEOUT, 0);
    }
}

static void want(struct fleet *f, enum fleet_job job)
{
    f->jobs |= 1u << job;
    pump(f);
}

static char *pids_text(const struct fleet *f)
{
    json_t *pids = relay_backend_pids(f->relay);
    char *text = json_dumps(pids, JSON_COMPACT);
    json_decref(pids);
    return text;
}

const char *fleet_id(const struct fleet *f)
{
    return f->id;
}

int fleet_lease_ms(const struct fleet *f)
{
    return f->lease_ms;
}

/* ---- the connection ---- */

/* Every statement's answer goes to its handler, then the next job goes out. */
static void on_answer(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    struct fleet *f = ctx;
    pgasync_done_fn handler = f->handler;
    f->handler = NULL;
    if (handler)
        handler(f, res, error, sqlstate);
    pump(f);
}

static int send_sql(struct fleet *f, const char *sql, int n, const char *const *values, pgasync_done_fn handler)
{
    f->handler = handler;
    return pgasync_send(&f->db, sql, n, values, on_answer, f);
}

static void link_lost(struct fleet *f, const char *why);

static void reconnect_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    connect_now(arg);
}

/* Until the proxy is registered, any error means starting over. */
static int setup_failed(struct fleet *f, const char *error)
{
    if (error)
        link_lost(f, error);
    return error != NULL;
}

static void on_registered(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)sqlstate;
    struct fleet *f = ctx;
    if (!error && (!res || PQntuples(res) != 1))
        error = "registering in pgtandem.proxies returned no row";
    if (setup_failed(f, error))
        return;
    int slot = atoi(PQgetvalue(res, 0, 0));
    if (slot < 1 || slot > MAX_SLOT)
        log_warn("fleet: no free slot (more than %d live proxies); cancel requests are not forwarded to this one",
                 MAX_SLOT);
    f->slot = slot;
    relay_set_fleet_slot(f->relay, slot >= 1 && slot <= MAX_SLOT ? slot : 0);
    f->link = LINK_UP;
    f->reconnects = 0;
    log_info("fleet: registered as %s (slot %d, lease %d ms)", f->id, f->slot, f->lease_ms);
    f->jobs |= 1u << JOB_LEASE;
    want(f, JOB_HEARTBEAT);
}

static void send_register(struct fleet *f)
{
    char pid[16], lease[16];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    snprintf(lease, sizeof lease, "%d", f->lease_ms);
    const char *values[9] = {f->id, f->host, f->listen, f->admin, PGTANDEM_VERSION, pid, lease,
                             relay_peer_address(f->relay), f->direct ? fleet_direct_key(f->direct) : ""};
    f->link = LINK_REGISTERING;
    if (send_sql(f, REGISTER_SQL, 9, values, on_registered) != 0)
        link_lost(f, f->db.error);
}

static void on_setup(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    (void)sqlstate;
    if (!setup_failed(ctx, error))
        send_register(ctx);
}

static void on_connected(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    (void)sqlstate;
    struct fleet *f = ctx;
    if (setup_failed(f, error))
        return;
    char *schema = mig_state_schema_sql();
    size_t n = schema ? strlen(schema) + sizeof SETUP_SQL_TAIL : 0;
    char *sql = schema ? malloc(n) : NULL;
    if (sql)
        snprintf(sql, n, "%s%s", schema, SETUP_SQL_TAIL);
    free(schema);
    f->link = LINK_SETUP;
    int rc = sql ? send_sql(f, sql, 0, NULL, on_setup) : -1;
    free(sql);
    if (rc != 0)
        link_lost(f, sql ? f->db.error : "out of memory");
}

static void connect_now(struct fleet *f)
{
    pgasync_close(&f->db);
    f->link = LINK_CONNECTING;
    if (pgasync_connect(&f->db, f->engine_db, on_connected, f) != 0)
        link_lost(f, f->db.error);
}

static void coordinator_finish(struct fleet *f, int ok, const char *why);
static void participant_finish(struct fleet *f, int committed, enum fleet_via via);

/* Whatever waited on the connection learns it is gone; it comes back by
 * itself. A participant keeps holding until its deadline: it cannot know
 * yet whether the contract committed. */
static void link_lost(struct fleet *f, const char *why)
{
    if (f->link != LINK_DOWN && f->reconnects == 0) /* once per outage, not per retry */
        log_warn("fleet: connection to the database lost (%s); reconnecting", why ? why : "?");
    char fence_why[192];
    snprintf(fence_why, sizeof fence_why, "the fleet's connection to the database is down: %s", why ? why : "?");
    relay_set_fence_why(f->relay, fence_why);
    pgasync_close(&f->db);
    f->link = LINK_DOWN;
    f->jobs &= ~((1u << JOB_ACK_CHECK) | (1u << JOB_HOLD) | (1u << JOB_LEASE) | (1u << JOB_HEARTBEAT));
    if (f->co.active)
        coordinator_finish(f, 0, "the fleet's connection to the database was lost");
    /* With a migration in progress the relay stays fenced until the link is
     * back, and once the fence outlasts its bound every client is refused:
     * retry as often as the heartbeat runs, so that a database that returns
     * (a compute restarted behind Neon's proxy) is served within a heartbeat
     * rather than after a backoff of seconds. */
    long delay = RECONNECT_MS << (f->reconnects < 3 ? f->reconnects : 3);
    if (f->migration[0] && mig_word_in_progress(f->status) && delay > f->heartbeat_ms)
        delay = f->heartbeat_ms;
    f->reconnects++;
    add_timer(f->reconnect_timer, delay);
}

/* A statement failed: a lost connection is handled as such, anything else
 * is logged and the connection goes on. */
static int failed(struct fleet *f, const char *what, const char *error, const char *sqlstate)
{
    if (!error)
        return 0;
    if (!pgasync_ready(&f->db) || (sqlstate && (!strncmp(sqlstate, "08", 2) || !strncmp(sqlstate, "57P", 3))))
        link_lost(f, error);
    else
        log_warn("fleet: %s: %s", what, error);
    return 1;
}

/* ---- heartbeat: renew the lease, learn the fleet and the migration ---- */

static void participant_begin(struct fleet *f, long long epoch, int drain_ms, int hold_ms, long long age_ms,
                              const char *coordinator, enum fleet_via via);

static void set_json(json_t **slot, const char *text)
{
    json_t *v = json_loads(text, 0, NULL);
    json_decref(*slot);
    *slot = v ? v : json_array();
}

/* The relay fences itself once the lease may have run out in the
 * database's eyes: the lease counts from before its renewal was sent.
 * Only while a migration is in progress, switched included (the reason
 * is with mig_status_in_progress): with none, no cutover can run without
 * this proxy. */
static void apply_lease(struct fleet *f)
{
    int fence = f->migration[0] && mig_word_in_progress(f->status);
    if (f->renewed_us)
        relay_set_lease(f->relay, fleet_lease_deadline_us(f->renewed_us, f->lease_ms, fence));
}

static void learn_migration(struct fleet *f, const char *name, const char *status)
{
    snprintf(f->migration, sizeof f->migration, "%s", name);
    snprintf(f->status, sizeof f->status, "%s", status);
    if (f->on_migration && name[0])
        f->on_migration(f->on_migration_ctx, name, status);
}

/* A hold that is open and young enough is joined: a proxy that started or
 * came back during a cutover must hold too. */
enum { HB_ALIVE, HB_MEMBERS, HB_BYPASSING, HB_NAME, HB_STATUS, HB_EPOCH, HB_COORDINATOR, HB_DRAIN_MS,
       HB_HOLD_MS, HB_AGE_MS, HB_RELEASED, HB_COMMITTED, HB_COORDINATOR_LIVE, HB_NFIELDS };

/* The hold being served, as the table has it now: a release whose notice
 * was lost ends it; so does a coordinator whose lease ran out (it died
 * mid-contract): nobody would release it, and its contract cannot commit
 * once the hold is closed, so the hold ends within the coordinator's
 * lease instead of lasting drain + lock_timeout. */
static void check_served_hold(struct fleet *f, PGresult *res)
{
    if (!f->part.active || PQgetisnull(res, 0, HB_EPOCH) || atoll(PQgetvalue(res, 0, HB_EPOCH)) != f->part.epoch)
        return;
    if (!strcmp(PQgetvalue(res, 0, HB_RELEASED), "t")) {
        participant_finish(f, !strcmp(PQgetvalue(res, 0, HB_COMMITTED), "t"), VIA_DATABASE);
        return;
    }
    if (!strcmp(PQgetvalue(res, 0, HB_COORDINATOR_LIVE), "t") || f->part.abandoning)
        return;
    log_warn("fleet: hold %lld: the coordinator %s is out of the fleet (its lease ran out); closing the hold",
             f->part.epoch, f->part.coordinator);
    f->part.abandoning = 1;
    want(f, JOB_ABANDON);
}

static void learn_hold(struct fleet *f, PGresult *res)
{
    if (PQgetisnull(res, 0, HB_EPOCH) || !strcmp(PQgetvalue(res, 0, HB_RELEASED), "t"))
        return;
    long long epoch = atoll(PQgetvalue(res, 0, HB_EPOCH));
    long long age = atoll(PQgetvalue(res, 0, HB_AGE_MS));
    int hold_ms = atoi(PQgetvalue(res, 0, HB_HOLD_MS));
    const char *coordinator = PQgetvalue(res, 0, HB_COORDINATOR);
    /* A hold whose coordinator is gone is not joined: nobody will release it. */
    if (strcmp(coordinator, f->id) != 0 && age < hold_ms && !strcmp(PQgetvalue(res, 0, HB_COORDINATOR_LIVE), "t"))
        participant_begin(f, epoch, atoi(PQgetvalue(res, 0, HB_DRAIN_MS)), hold_ms, age, coordinator,
                          VIA_DATABASE);
}

/* The other live proxies' peer listeners, so a CancelRequest for one of
 * their sessions that reaches us is sent on. */
static void share_peers(struct fleet *f)
{
    struct relay_peer peers[MAX_SLOT];
    size_t n = 0, i;
    json_t *m;
    json_array_foreach(f->members, i, m) {
        const char *peer = json_string_value(json_object_get(m, "peer"));
        const char *id = json_string_value(json_object_get(m, "id"));
        int slot = (int)json_integer_value(json_object_get(m, "slot"));
        if (n == MAX_SLOT || !peer || !id || !strcmp(id, f->id) || !json_is_true(json_object_get(m, "live")) ||
            slot < 1 || slot > MAX_SLOT)
            continue;
        peers[n].slot = slot;
        snprintf(peers[n].address, sizeof peers[n].address, "%s", peer);
        n++;
    }
    relay_set_fleet_peers(f->relay, peers, n);
}

/* Two registrations that run at once can both take the same free slot:
 * neither sees the other's row before it commits. Left so, a cancel for
 * one's session that reaches the other is taken for its own and dropped.
 * The proxy with the greater id registers again, which moves it to a slot
 * no other live proxy holds; one moves, so the two cannot chase each other. */
static int slot_taken_by_another(const struct fleet *f)
{
    size_t i;
    json_t *m;
    if (f->slot < 1 || f->slot > MAX_SLOT)
        return 0;
    json_array_foreach(f->members, i, m) {
        const char *id = json_string_value(json_object_get(m, "id"));
        if (id && strcmp(id, f->id) < 0 && json_is_true(json_object_get(m, "live")) &&
            json_integer_value(json_object_get(m, "slot")) == f->slot) {
            log_warn("fleet: slot %d is also held by %s; registering again for another", f->slot, id);
            return 1;
        }
    }
    return 0;
}

static void on_refreshed(void *ctx, int drained, uint64_t waited_us)
{
    (void)waited_us;
    struct fleet *f = ctx;
    int n = drained ? relay_reprepare(f->relay) : 0;
    if (drained)
        relay_release(f->relay, NULL);
    log_info("fleet: lease renewed after the migration completed without us; %d statements prepared again", n);
}

/* This proxy was out of the fleet (stopped, cut off) while the contract
 * ran: its sessions wait at their boundaries (the fence), and their
 * statements, prepared against the old shape, are prepared again before
 * the fence lifts. */
static void refresh_after_fence(struct fleet *f)
{
    log_warn("fleet: the migration completed while this proxy's lease had run out; preparing statements again");
    if (relay_hold(f->relay, "refresh", "preparing statements again after a contract that ran without this proxy",
                   f->lease_ms, on_refreshed, f) != 0)
        log_error("fleet: cannot hold traffic to prepare statements again");
}

/* A renewal answered: the lease counts from when it was sent. A fence
 * that is up stays up until the bookkeeping after it has said what
 * happened meanwhile (a contract that ran without us: refresh_after_fence). */
static void on_lease(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    struct fleet *f = ctx;
    f->heartbeat_answered_ok = !error;
    if (error) {
        char why[192];
        snprintf(why, sizeof why, "the lease's renewal fails: %s", error);
        relay_set_fence_why(f->relay, why);
    }
    if (failed(f, "renewing the lease", error, sqlstate))
        return;
    f->renewed_us = f->lease_sent_us;
    relay_set_fence_why(f->relay, "");
    if (!relay_lease_expired(f->relay))
        apply_lease(f);
}

static void on_heartbeat(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    struct fleet *f = ctx;
    if (error && relay_lease_expired(f->relay)) { /* the fence waits for this answer */
        char why[192];
        snprintf(why, sizeof why, "the heartbeat fails: %s", error);
        relay_set_fence_why(f->relay, why);
    }
    if (failed(f, "heartbeat", error, sqlstate))
        return;
    if (!res || PQntuples(res) != 1 || PQnfields(res) != HB_NFIELDS) {
        link_lost(f, "unexpected heartbeat answer");
        return;
    }
    if (atoi(PQgetvalue(res, 0, HB_ALIVE)) == 0) { /* dropped as dead while we were away */
        log_warn("fleet: this proxy's row was dropped; registering again");
        send_register(f);
        return;
    }
    set_json(&f->members, PQgetvalue(res, 0, HB_MEMBERS));
    if (slot_taken_by_another(f)) {
        send_register(f);
        return;
    }
    share_peers(f);
    set_json(&f->bypassing, PQgetvalue(res, 0, HB_BYPASSING));
    int fenced = relay_lease_expired(f->relay);
    char before[sizeof f->status];
    snprintf(before, sizeof before, "%s", f->status);
    learn_migration(f, PQgetvalue(res, 0, HB_NAME), PQgetvalue(res, 0, HB_STATUS));
    if (fenced && strcmp(before, f->status) != 0 && mig_status_of_word(f->status) == MIG_ST_COMPLETED)
        refresh_after_fence(f);
    check_served_hold(f, res);
    learn_hold(f, res);
    apply_lease(f);
}

static void send_lease(struct fleet *f)
{
    f->lease_sent_us = now_us();
    if (send_sql(f, LEASE_SQL, 1, (const char *[]){f->id}, on_lease) != 0)
        link_lost(f, f->db.error);
}

static void send_heartbeat(struct fleet *f)
{
    json_t *counts = relay_version_counts(f->relay);
    char *sessions = json_dumps(counts, JSON_COMPACT);
    json_decref(counts);
    char *pids = pids_text(f);
    char lease[16];
    snprintf(lease, sizeof lease, "%d", f->lease_ms);
    const char *values[4] = {f->id, sessions ? sessions : "{}", pids ? pids : "[]", lease};
    if (send_sql(f, HEARTBEAT_SQL, 4, values, on_heartbeat) != 0)
        link_lost(f, f->db.error);
    free(sessions);
    free(pids);
}

static void heartbeat_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fleet *f = arg;
    /* due, and nothing to send it on, or the last one unanswered or
     * answered with an error: one failure per heartbeat, counted here */
    if (f->link != LINK_UP || f->handler == on_lease || (f->jobs & (1u << JOB_LEASE)) || !f->heartbeat_answered_ok)
        f->heartbeat_failures++;
    f->heartbeat_answered_ok = 1; /* the next one is judged on its own answer */
    if (f->link == LINK_UP && !(f->jobs & (1u << JOB_LEAVE))) {
        f->jobs |= 1u << JOB_LEASE;
        want(f, JOB_HEARTBEAT);
    }
    uint64_t now = now_us();
    uint64_t waited_us = now - f->lease_sent_us;
    if (f->handler == on_lease && fleet_heartbeat_late(now, f->lease_sent_us, f->heartbeat_ms)) {
        char why[192]; /* a lock on pgtandem.fleet_leases, a database that hangs */
        snprintf(why, sizeof why, "the lease's renewal has had no answer for %.1f s", (double)waited_us / 1e6);
        relay_set_fence_why(f->relay, why);
    }
    add_timer(f->heartbeat_timer, f->heartbeat_ms);
}

/* ---- participant: holding for another proxy's cutover ---- */

/* The hold that waited for the one served to end (another_hold). */
static void begin_next(struct fleet *f)
{
    if (!f->part.next_epoch)
        return;
    long long next = f->part.next_epoch;
    f->part.next_epoch = 0;
    participant_begin(f, next, f->part.next_drain_ms, f->part.next_hold_ms, 0, f->part.next_coordinator,
                      f->part.next_learned);
}

/* Drained: said on the peer channel the request came on, if any (the
 * coordinator may go on with the contract), and in our row, which is what
 * the commit waits for. */
static void on_participant_drained(void *ctx, int drained, uint64_t waited_us)
{
    struct fleet *f = ctx;
    if (!f->part.active)
        return;
    if (!drained) { /* the relay resumed by itself; the coordinator gives up on us */
        log_warn("fleet: hold %lld: sessions did not reach a boundary within %d ms", f->part.epoch,
                 f->part.drain_ms);
        f->part.active = 0;
        evtimer_del(f->part.deadline);
        if (f->direct)
            fleet_direct_forget(f->direct, f->part.epoch);
        begin_next(f);
        return;
    }
    int direct = f->direct && fleet_direct_held(f->direct, f->part.epoch);
    f->part.drained_us = now_us();
    log_info("fleet: hold %lld: drained after %.2f ms; acknowledging%s", f->part.epoch, (double)waited_us / 1000.0,
             direct ? " (on the peer port too)" : "");
    f->part.drained = 1;
    want(f, JOB_ACK);
}

/* The release (or our own closing of the hold) says whether the contract
 * committed: then the sessions' statements are prepared again first. A
 * hold whose row was confirmed, or that the coordinator released itself,
 * is not joined again; a newer one that waited is begun. */
static void participant_finish(struct fleet *f, int committed, enum fleet_via via)
{
    if (!f->part.active)
        return;
    f->part.active = 0;
    evtimer_del(f->part.deadline);
    f->jobs &= ~((1u << JOB_ACK) | (1u << JOB_ABANDON));
    if ((f->part.confirmed || via == VIA_PEER) && f->part.epoch > f->part.last_epoch)
        f->part.last_epoch = f->part.epoch;
    uint64_t released_us = now_us();
    int reprepared = committed && f->part.drained ? relay_reprepare(f->relay) : 0;
    relay_forget(f->relay, f);
    struct relay_hold_stats st = {0, 0};
    relay_release(f->relay, &st);
    uint64_t resumed_us = now_us();
    const struct participant_hold *h = &f->part;
    log_info("fleet: hold %lld steps (ms after it was learnt of): drained %.2f, acknowledged in the database %.2f,"
             " release heard %.2f (by the %s), statements prepared again and traffic flowing %.2f", h->epoch,
             h->drained_us ? (double)(h->drained_us - h->learned_us) / 1000.0 : -1.0,
             h->acked_us ? (double)(h->acked_us - h->learned_us) / 1000.0 : -1.0,
             (double)(released_us - h->learned_us) / 1000.0, via_names[via],
             (double)(resumed_us - h->learned_us) / 1000.0);
    if (f->direct)
        fleet_direct_forget(f->direct, f->part.epoch);
    f->holds_released[via]++;
    f->last = (struct last_hold){f->part.epoch, f->part.learned, via, committed, f->part.confirmed, st.held_ms};
    log_info("fleet: hold %lld ended (%s): traffic held %.2f ms, %d statements prepared again (learnt of on the %s,"
             " released by the %s)", f->part.epoch, committed ? "contract committed" : "nothing changed", st.held_ms,
             reprepared, f->part.learned == VIA_PEER ? "peer port" : "database",
             via == VIA_PEER ? "coordinator on the peer port" : via == VIA_DATABASE ? "database" : "proxy itself");
    begin_next(f);
}

static void participant_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fleet *f = arg;
    if (!f->part.active)
        return;
    if (f->link != LINK_UP) {
        log_error("fleet: hold %lld: no release and no database to ask; resuming", f->part.epoch);
        participant_finish(f, 0, VIA_SELF);
        return;
    }
    log_warn("fleet: hold %lld: no release within %d ms; closing the hold ourselves", f->part.epoch,
             f->part.hold_ms);
    want(f, JOB_ABANDON);
}

/* A hold to begin once the one served ends (participant_finish). */
static void remember_next(struct fleet *f, long long epoch, int drain_ms, int hold_ms, const char *coordinator,
                          enum fleet_via via)
{
    if (f->part.next_epoch && f->part.next_epoch >= epoch)
        return;
    f->part.next_epoch = epoch;
    f->part.next_drain_ms = drain_ms;
    f->part.next_hold_ms = hold_ms;
    f->part.next_learned = via;
    snprintf(f->part.next_coordinator, sizeof f->part.next_coordinator, "%s", coordinator);
}

/* Another hold while one is served. One our row acknowledges (or may: the
 * answer is on its way) is real: an older request is stale, and a newer
 * one means its release was missed (or the newer one is forged), so it is
 * closed through its row, which says whether it committed, and the newer
 * one begins after. One not yet acknowledged may be forged: an older
 * request waits for it to end, a newer one replaces it (nothing in the
 * database counts on it). Returns 1 when the caller begins the new one now. */
static int another_hold(struct fleet *f, long long epoch, int drain_ms, int hold_ms, const char *coordinator,
                        enum fleet_via via)
{
    int settled = f->part.confirmed || f->part.acking == f->part.epoch;
    if (settled && epoch < f->part.epoch)
        return 0;
    if (settled || epoch < f->part.epoch) {
        remember_next(f, epoch, drain_ms, hold_ms, coordinator, via);
        if (settled && !f->part.abandoning) {
            f->part.abandoning = 1;
            want(f, JOB_ABANDON);
        }
        return 0;
    }
    return 1;
}

static void participant_begin(struct fleet *f, long long epoch, int drain_ms, int hold_ms, long long age_ms,
                              const char *coordinator, enum fleet_via via)
{
    if (f->part.active && f->part.epoch == epoch) { /* heard of again, the other way */
        if (via == VIA_PEER && f->part.drained && f->direct)
            fleet_direct_held(f->direct, epoch);
        return;
    }
    if (epoch <= f->part.last_epoch)
        return;
    struct participant_hold waiting = f->part; /* an older request that waits, if any */
    if (f->part.active) {
        if (!another_hold(f, epoch, drain_ms, hold_ms, coordinator, via))
            return;
        f->part.next_epoch = 0; /* kept for after the new one, not begun now */
        participant_finish(f, 0, VIA_SELF);
    }
    struct event *deadline = f->part.deadline;
    f->part = (struct participant_hold){.active = 1, .epoch = epoch, .last_epoch = f->part.last_epoch,
                                        .drain_ms = drain_ms, .hold_ms = hold_ms, .deadline = deadline,
                                        .learned = via, .learned_us = now_us()};
    snprintf(f->part.coordinator, sizeof f->part.coordinator, "%s", coordinator);
    if (waiting.active && waiting.next_epoch && waiting.next_epoch > f->part.last_epoch)
        remember_next(f, waiting.next_epoch, waiting.next_drain_ms, waiting.next_hold_ms, waiting.next_coordinator,
                      waiting.next_learned);
    f->holds_learned[via]++;
    long remaining = hold_ms - (long)age_ms;
    add_timer(f->part.deadline, remaining > 0 ? remaining : 0);
    log_info("fleet: hold %lld asked for by %s (on the %s); holding traffic at transaction boundaries", epoch,
             coordinator, via == VIA_PEER ? "peer port" : "database");
    char reason[192];
    snprintf(reason, sizeof reason, "fleet hold %lld for the cutover run by %.96s (at most %d ms)", epoch,
             coordinator, hold_ms);
    if (relay_hold(f->relay, "fleet_hold", reason, drain_ms, on_participant_drained, f) != 0) {
        log_warn("fleet: hold %lld: cannot hold traffic now", epoch);
        f->part.active = 0;
        evtimer_del(f->part.deadline);
    }
}

static void on_acked(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    struct fleet *f = ctx;
    long long epoch = f->part.acking;
    f->part.acking = 0;
    if (failed(f, "acknowledging the hold", error, sqlstate))
        return;
    if (!f->part.active || f->part.epoch != epoch || !res || PQntuples(res) != 1 || PQnfields(res) < 4)
        return;
    if (PQgetvalue(res, 0, 0)[0] == 't') {
        f->part.confirmed = 1;
        f->part.acked_us = now_us();
        if (epoch > f->part.last_epoch)
            f->part.last_epoch = epoch;
        if (f->part.next_epoch && !f->part.abandoning) { /* a newer one waits: see participant_begin */
            f->part.abandoning = 1;
            want(f, JOB_ABANDON);
        }
        return;
    }
    if (PQgetvalue(res, 0, 1)[0] == 't') { /* released before we could acknowledge */
        participant_finish(f, PQgetvalue(res, 0, 3)[0] == 't', VIA_DATABASE);
        return;
    }
    f->holds_unconfirmed++;
    log_warn("fleet: hold %lld asked for by %s is not in the database: no coordinator asked for it; resuming", epoch,
             f->part.coordinator);
    participant_finish(f, 0, VIA_SELF);
}

static void on_abandoned(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    struct fleet *f = ctx;
    if (failed(f, "closing the hold", error, sqlstate)) {
        participant_finish(f, 0, VIA_SELF);
        return;
    }
    participant_finish(f, res && PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't', VIA_SELF);
}

/* Peer messages (fleet_direct.h) that verified. */
static void direct_hold(void *ctx, long long epoch, int drain_ms, int hold_ms, const char *coordinator)
{
    struct fleet *f = ctx;
    if (strcmp(coordinator, f->id) != 0)
        participant_begin(f, epoch, drain_ms, hold_ms, 0, coordinator, VIA_PEER);
}

static void direct_release(void *ctx, long long epoch, int committed)
{
    struct fleet *f = ctx;
    if (f->part.active && epoch == f->part.epoch)
        participant_finish(f, committed, VIA_PEER);
}

static void count_ack(struct fleet *f, const char *who, enum fleet_via via);

static void direct_held(void *ctx, long long epoch, const char *participant)
{
    struct fleet *f = ctx;
    if (f->co.active && epoch == f->co.epoch)
        count_ack(f, participant, VIA_PEER);
}

/* ---- coordinator ---- */

static void coordinator_finish(struct fleet *f, int ok, const char *why)
{
    if (!f->co.active)
        return;
    f->co.active = 0;
    evtimer_del(f->co.timeout);
    evtimer_del(f->co.recheck);
    f->jobs &= ~(1u << JOB_ACK_CHECK);
    fleet_held_fn done = f->co.done;
    f->co.done = NULL;
    if (done)
        done(f->co.ctx, ok, why);
}

static void coordinator_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fleet *f = arg;
    char why[640];
    snprintf(why, sizeof why, "%s within the drain timeout (%d ms)",
             f->co.missing[0] ? f->co.missing : "the fleet's hold could not be set up", f->co.drain_ms);
    coordinator_finish(f, 0, why);
}

static void recheck_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fleet *f = arg;
    if (f->co.active && f->co.epoch)
        want(f, JOB_ACK_CHECK);
}

static void on_ack_check(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    struct fleet *f = ctx;
    if (failed(f, "checking the acknowledgements", error, sqlstate) || !f->co.active)
        return;
    if (res && PQntuples(res) == 1 && PQgetisnull(res, 0, 0)) {
        coordinator_finish(f, 1, NULL);
        return;
    }
    snprintf(f->co.missing, sizeof f->co.missing, "proxies %s did not acknowledge the hold",
             res && PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "?");
    add_timer(f->co.recheck, ACK_RECHECK_MS); /* a lease may run out meanwhile */
}

static void on_hold_created(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    struct fleet *f = ctx;
    if (failed(f, "asking the fleet to hold", error, sqlstate)) {
        coordinator_finish(f, 0, error);
        return;
    }
    f->co.epoch = res && PQntuples(res) == 1 ? atoll(PQgetvalue(res, 0, 0)) : 0;
    json_t *others = res && PQntuples(res) == 1 ? json_loads(PQgetvalue(res, 0, 2), 0, NULL) : NULL;
    json_decref(f->co.expected);
    f->co.expected = json_array();
    size_t i;
    json_t *o;
    json_array_foreach(others, i, o) {
        json_array_append(f->co.expected, json_object_get(o, "id"));
    }
    if (f->co.release_pending) { /* given up while the row was being written */
        f->co.release_pending = 0;
        f->co.release_epoch = f->co.epoch;
        json_decref(others);
        want(f, JOB_RELEASE);
        return;
    }
    memset(f->co.acks, 0, sizeof f->co.acks);
    f->co.written_us = now_us();
    int asked = f->direct && others ? fleet_direct_ask(f->direct, f->co.epoch, f->co.drain_ms, f->co.hold_ms, others)
                                    : 0;
    json_decref(others);
    log_info("fleet: hold %lld written; %zu other proxies asked (%d on the peer port too)", f->co.epoch,
             json_array_size(f->co.expected), asked);
    long long epoch = f->co.epoch;
    fleet_announced_fn announced = f->co.announced;
    f->co.announced = NULL;
    if (announced)
        announced(f->co.ctx);
    if (!f->co.active || f->co.epoch != epoch) /* given up meanwhile */
        return;
    if (json_array_size(f->co.expected) == 0) { /* nobody else: no acknowledgement to wait for */
        coordinator_finish(f, 1, NULL);
        return;
    }
    /* Acknowledgements are counted as they arrive; the table is read now
     * and then for leases that run out and proxies that join. The commit
     * check decides in the end either way. */
    add_timer(f->co.recheck, ACK_RECHECK_MS);
}

/* An acknowledgement arrived (in the database or on the peer port): the
 * hold is complete once every proxy that was live when it began has sent
 * one. One that came on the peer port only is checked in the database
 * before the commit (fleet_held_wait_sql). */
static void count_ack(struct fleet *f, const char *who, enum fleet_via via)
{
    size_t i;
    json_t *id;
    json_array_foreach(f->co.expected, i, id) {
        if (json_is_string(id) && strcmp(json_string_value(id), who) == 0) {
            log_info("fleet: hold %lld: %s holds (said %s), %.2f ms after the hold was written", f->co.epoch, who,
                     via == VIA_PEER ? "on the peer port" : "in the database",
                     (double)(now_us() - f->co.written_us) / 1000.0);
            json_array_remove(f->co.expected, i);
            f->co.acks[via]++;
            f->acks[via]++;
            break;
        }
    }
    if (json_array_size(f->co.expected) == 0)
        coordinator_finish(f, 1, NULL);
}

void fleet_hold_acks(const struct fleet *f, int *database, int *peer)
{
    *database = f->co.acks[VIA_DATABASE];
    *peer = f->co.acks[VIA_PEER];
}

int fleet_hold_all(struct fleet *f, const char *migration, int drain_ms, int hold_ms, fleet_announced_fn announced,
                   fleet_held_fn done, void *ctx)
{
    if (f->link != LINK_UP || !pgasync_ready(&f->db) || f->co.active)
        return -1;
    f->co.active = 1;
    f->co.epoch = 0;
    f->co.release_pending = 0;
    f->co.missing[0] = '\0';
    snprintf(f->co.migration, sizeof f->co.migration, "%s", migration);
    f->co.drain_ms = drain_ms;
    f->co.hold_ms = hold_ms;
    f->co.announced = announced;
    f->co.done = done;
    f->co.ctx = ctx;
    add_timer(f->co.timeout, drain_ms);
    want(f, JOB_HOLD);
    return 0;
}

/* Runs in the contract's transaction just before COMMIT: it commits only
 * while the hold is still open (a participant that gave up on it closed
 * it, and that waits for this row lock) and every proxy whose lease is
 * current has acknowledged it. Its release notice is delivered with the
 * COMMIT, so participants resume without another round trip. */
static const char COMMIT_CHECK_SQL[] =
    "DO $fleet$ DECLARE h record; missing text; BEGIN"
    " SELECT * INTO h FROM pgtandem.fleet_holds WHERE epoch = %lld FOR UPDATE;"
    " IF NOT FOUND OR h.released_at IS NOT NULL THEN"
    "  RAISE EXCEPTION 'fleet hold %lld was given up before the contract could commit' USING ERRCODE = 'PGT01';"
    " END IF;"
    " SELECT string_agg(id, ', ' ORDER BY id) INTO missing FROM pgtandem.proxies p"
    "  WHERE id <> h.coordinator AND held_epoch IS DISTINCT FROM %lld"
    "    AND " RENEWED_AT("p") " > clock_timestamp() - make_interval(secs => %d / 1000.0);"
    " IF missing IS NOT NULL THEN"
    "  RAISE EXCEPTION 'proxies %% have not held their traffic', missing USING ERRCODE = 'PGT01';"
    " END IF;"
    " UPDATE pgtandem.fleet_holds SET committed = true WHERE epoch = %lld;"
    " PERFORM pg_notify('" CHANNEL_FLEET "', 'release %lld 1');"
    " RAISE NOTICE 'pgtandem: contract steps (ms after BEGIN): commit check done %%',"
    "  round((extract(epoch FROM clock_timestamp() - now()) * 1000)::numeric, 2);"
    " END $fleet$;\n";

char *fleet_commit_check_sql(const struct fleet *f)
{
    char sql[sizeof COMMIT_CHECK_SQL + 128] = "";
    if (f->co.epoch)
        snprintf(sql, sizeof sql, COMMIT_CHECK_SQL, f->co.epoch, f->co.epoch, f->co.epoch, f->lease_ms,
                 f->co.epoch, f->co.epoch);
    return strdup(sql);
}

/* Runs in the contract's transaction after its DDL: a participant that
 * said "held" on the peer port has its acknowledgement in its row a round
 * trip later, which is waited for here (the contract's locks are taken,
 * but every proxy holds its traffic). Then the sessions that bypass the
 * fleet are read, once every live proxy's sessions are in its row. */
static const char HELD_WAIT_SQL[] =
    "DO $held$ DECLARE missing text; until timestamptz := clock_timestamp() + make_interval(secs => %d / 1000.0);"
    " ddl_done timestamptz := clock_timestamp(); polls int := 0;"
    " BEGIN LOOP"
    "  SELECT string_agg(id, ', ' ORDER BY id) INTO missing FROM pgtandem.proxies p"
    "   WHERE id <> (SELECT coordinator FROM pgtandem.fleet_holds WHERE epoch = %lld)"
    "     AND held_epoch IS DISTINCT FROM %lld"
    "     AND " RENEWED_AT("p") " > clock_timestamp() - make_interval(secs => %d / 1000.0);"
    "  EXIT WHEN missing IS NULL;"
    "  IF clock_timestamp() > until THEN"
    "   RAISE EXCEPTION 'proxies %% have not acknowledged fleet hold %lld in the database within %d ms', missing"
    "    USING ERRCODE = 'PGT01';"
    "  END IF;"
    "  PERFORM pg_sleep(0.001);"
    "  polls := polls + 1;"
    " END LOOP;"
    /* the contract's steps inside its first round trip, for the log (pgasync logs a "pgtandem:" notice) */
    " RAISE NOTICE 'pgtandem: contract steps (ms after BEGIN): DDL done %%, every acknowledgement in the database %%"
    " (after %% polls)', round((extract(epoch FROM ddl_done - now()) * 1000)::numeric, 2),"
    "  round((extract(epoch FROM clock_timestamp() - now()) * 1000)::numeric, 2), polls;"
    " END $held$;\n";

/* Replaces $1 and $2 in FLEET_BYPASSING_SQL (which has no other '$'). */
static char *bypassing_with(const char *tables, const char *lease)
{
    size_t cap = sizeof FLEET_BYPASSING_SQL + 4 * (strlen(tables) + strlen(lease)) + 16, used = 0;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    for (const char *p = FLEET_BYPASSING_SQL; *p; p++) {
        const char *v = p[0] == '$' && p[1] == '1' ? tables : p[0] == '$' && p[1] == '2' ? lease : NULL;
        size_t n = v ? strlen(v) : 1;
        if (used + n + 1 > cap) {
            free(out);
            return NULL;
        }
        memcpy(out + used, v ? v : p, n);
        used += n;
        p += v ? 1 : 0;
    }
    out[used] = '\0';
    return out;
}

char *fleet_held_wait_sql(const struct fleet *f, const char *tables_literal, int wait_ms)
{
    if (!f->co.epoch)
        return strdup("");
    char lease[16], wait[sizeof HELD_WAIT_SQL + 128];
    snprintf(lease, sizeof lease, "%d", f->lease_ms);
    snprintf(wait, sizeof wait, HELD_WAIT_SQL, wait_ms, f->co.epoch, f->co.epoch, f->lease_ms, f->co.epoch, wait_ms);
    char *select = bypassing_with(tables_literal, lease);
    size_t n = select ? strlen(wait) + strlen(select) + 3 : 0;
    char *sql = select ? malloc(n) : NULL;
    if (sql)
        snprintf(sql, n, ";\n%s%s", wait, select);
    free(select);
    return sql;
}

void fleet_release_all(struct fleet *f, enum fleet_outcome outcome)
{
    int had_row = f->co.epoch != 0;
    int in_flight = f->co.active && !had_row && (f->jobs & (1u << JOB_HOLD)) == 0;
    f->co.done = NULL;
    f->co.announced = NULL;
    coordinator_finish(f, 0, NULL);
    if (f->direct && had_row && outcome != FLEET_UNKNOWN)
        fleet_direct_release(f->direct, f->co.epoch, outcome == FLEET_COMMITTED);
    else if (f->direct)
        fleet_direct_drop(f->direct);
    if (had_row) {
        f->co.release_epoch = f->co.epoch;
        f->co.epoch = 0;
        want(f, JOB_RELEASE);
    } else if (in_flight) {
        f->co.release_pending = 1;
    }
    f->jobs &= ~(1u << JOB_HOLD);
}

static void on_released(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    struct fleet *f = ctx;
    failed(f, "releasing the fleet", error, sqlstate);
}

static void on_left(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    struct fleet *f = ctx;
    if (!failed(f, "leaving the fleet", error, sqlstate))
        log_info("fleet: %s left the fleet", f->id);
}

void fleet_leave(struct fleet *f)
{
    evtimer_del(f->heartbeat_timer);
    f->jobs &= ~((1u << JOB_LEASE) | (1u << JOB_HEARTBEAT));
    want(f, JOB_LEAVE);
}

/* ---- notifications ---- */

static void on_fleet_message(struct fleet *f, const char *payload)
{
    long long epoch = 0;
    int a = 0, b = 0;
    char who[96] = "";
    if (sscanf(payload, "hold %lld %d %d %95s", &epoch, &a, &b, who) == 4) {
        if (strcmp(who, f->id) != 0)
            participant_begin(f, epoch, a, b, 0, who, VIA_DATABASE);
    } else if (sscanf(payload, "ack %lld %95s", &epoch, who) == 2) {
        if (f->co.active && epoch == f->co.epoch)
            count_ack(f, who, VIA_DATABASE);
    } else if (sscanf(payload, "release %lld %d", &epoch, &a) == 2) {
        if (f->part.active && epoch == f->part.epoch)
            participant_finish(f, a == 1, VIA_DATABASE);
    }
}

static void on_notify(void *ctx, const char *channel, const char *payload)
{
    struct fleet *f = ctx;
    if (!strcmp(channel, CHANNEL_FLEET)) {
        on_fleet_message(f, payload);
        return;
    }
    char name[128] = "", status[32] = "";
    if (!strcmp(channel, CHANNEL_MIGRATIONS) && sscanf(payload, "%127s %31s", name, status) == 2)
        learn_migration(f, name, status);
}

/* ---- the queue ---- */

static void send_job(struct fleet *f, enum fleet_job job)
{
    char a[32], b[32], c[32], lease[16];
    snprintf(lease, sizeof lease, "%d", f->lease_ms);
    char *pids = NULL;
    int rc = -1;
    switch (job) {
    case JOB_RELEASE:
        snprintf(a, sizeof a, "%lld", f->co.release_epoch);
        rc = send_sql(f, RELEASE_SQL, 1, (const char *[]){a}, on_released);
        break;
    case JOB_ABANDON:
        snprintf(a, sizeof a, "%lld", f->part.epoch);
        rc = send_sql(f, RELEASE_SQL, 1, (const char *[]){a}, on_abandoned);
        break;
    case JOB_ACK:
        f->part.acking = f->part.epoch;
        snprintf(a, sizeof a, "%lld", f->part.epoch);
        pids = pids_text(f);
        rc = send_sql(f, ACK_SQL, 3, (const char *[]){f->id, a, pids ? pids : "[]"}, on_acked);
        break;
    case JOB_HOLD:
        snprintf(a, sizeof a, "%d", f->co.drain_ms);
        snprintf(b, sizeof b, "%d", f->co.hold_ms);
        pids = pids_text(f);
        rc = send_sql(f, HOLD_SQL, 6, (const char *[]){f->co.migration, f->id, a, b, pids ? pids : "[]", lease},
                          on_hold_created);
        break;
    case JOB_ACK_CHECK:
        snprintf(c, sizeof c, "%lld", f->co.epoch);
        rc = send_sql(f, ACK_CHECK_SQL, 3, (const char *[]){f->id, lease, c}, on_ack_check);
        break;
    case JOB_LEASE:
        send_lease(f);
        return;
    case JOB_HEARTBEAT:
        send_heartbeat(f);
        return;
    case JOB_LEAVE:
        rc = send_sql(f, LEAVE_SQL, 1, (const char *[]){f->id}, on_left);
        break;
    case NJOBS:
        return;
    }
    free(pids);
    if (rc != 0)
        link_lost(f, f->db.error);
}

static void pump(struct fleet *f)
{
    if (f->link != LINK_UP || f->db.busy)
        return;
    if (!pgasync_ready(&f->db)) { /* closed while idle (a restart): reconnect */
        link_lost(f, "the connection closed while idle");
        return;
    }
    for (int job = 0; job < NJOBS; job++)
        if (f->jobs & (1u << job)) {
            f->jobs &= ~(1u << job);
            send_job(f, (enum fleet_job)job);
            return;
        }
}


/* ---- status and lifecycle ---- */

static json_t *by_via(const unsigned long long n[NVIA])
{
    return json_pack("{s:I,s:I,s:I}", via_names[VIA_DATABASE], (json_int_t)n[VIA_DATABASE], via_names[VIA_PEER],
                     (json_int_t)n[VIA_PEER], via_names[VIA_SELF], (json_int_t)n[VIA_SELF]);
}

json_t *fleet_status_json(const struct fleet *f)
{
    json_t *o = json_pack("{s:s,s:i,s:i,s:b,s:O,s:O}", "id", f->id, "slot", f->slot, "lease_ms", f->lease_ms,
                          "connected", f->link == LINK_UP, "members", f->members, "bypassing", f->bypassing);
    struct fleet_direct_counts dc = {0, 0, 0};
    if (f->direct)
        fleet_direct_counts(f->direct, &dc);
    json_t *direct = json_pack("{s:b,s:I,s:I,s:I}", "enabled", f->direct && relay_peer_address(f->relay)[0],
                               "asked", (json_int_t)dc.asked, "refused", (json_int_t)dc.refused, "failed",
                               (json_int_t)dc.failed);
    json_t *holds = json_pack("{s:o,s:o,s:I,s:o}", "learned", by_via(f->holds_learned), "released",
                              by_via(f->holds_released), "unconfirmed", (json_int_t)f->holds_unconfirmed,
                              "acks_received", by_via(f->acks));
    json_t *last = f->last.epoch ? json_pack("{s:I,s:s,s:s,s:b,s:b,s:f}", "epoch", (json_int_t)f->last.epoch,
                                             "learned", via_names[f->last.learned], "released",
                                             via_names[f->last.released], "committed", f->last.committed,
                                             "confirmed", f->last.confirmed, "held_ms", f->last.held_ms)
                                 : json_null();
    if (o) {
        json_object_set_new(o, "direct", direct ? direct : json_null());
        json_object_set_new(o, "holds", holds ? holds : json_null());
        json_object_set_new(o, "last_hold", last ? last : json_null());
    } else {
        json_decref(direct);
        json_decref(holds);
        json_decref(last);
    }
    return o;
}

void fleet_metrics(const struct fleet *f, struct fleet_metrics *out)
{
    uint64_t now = now_us();
    out->connected = f->link == LINK_UP;
    out->lease_s = f->lease_ms / 1000.0;
    out->lease_age_s = f->renewed_us && now >= f->renewed_us ? (double)(now - f->renewed_us) / 1e6 : -1;
    out->heartbeat_failures = f->heartbeat_failures;
    size_t i;
    json_t *m;
    out->members = 0;
    json_array_foreach(f->members, i, m) { /* dead rows stay listed until cleaned up */
        out->members += json_is_true(json_object_get(m, "live"));
    }
    out->bypassing = json_is_array(f->bypassing) ? json_array_size(f->bypassing) : 0;
    memcpy(out->holds_learned, f->holds_learned, sizeof out->holds_learned);
    memcpy(out->holds_released, f->holds_released, sizeof out->holds_released);
    memcpy(out->acks, f->acks, sizeof out->acks);
    out->holds_unconfirmed = f->holds_unconfirmed;
    struct fleet_direct_counts dc = {0, 0, 0};
    if (f->direct)
        fleet_direct_counts(f->direct, &dc);
    out->peer_asked = dc.asked;
    out->peer_refused = dc.refused;
    out->peer_failed = dc.failed;
}

void fleet_observe(struct fleet *f, fleet_migration_fn fn, void *ctx)
{
    f->on_migration = fn;
    f->on_migration_ctx = ctx;
}

/* host-pid-random: unique across restarts, readable in the table. */
static void make_id(struct fleet *f, const char *id)
{
    if (gethostname(f->host, sizeof f->host - 1) != 0)
        snprintf(f->host, sizeof f->host, "localhost");
    if (id && id[0]) {
        snprintf(f->id, sizeof f->id, "%s", id);
        return;
    }
    /* in a container the pid is always 1 and a restarted one keeps its host
     * name: 48 random bits keep a new process from taking the row (and the
     * held epoch) of the one it replaced */
    unsigned char r[6] = {0};
    if (RAND_bytes(r, sizeof r) != 1) {
        uint64_t t = now_us();
        memcpy(r, &t, sizeof r);
    }
    snprintf(f->id, sizeof f->id, "%.60s-%d-%02x%02x%02x%02x%02x%02x", f->host, (int)getpid(), r[0], r[1], r[2],
             r[3], r[4], r[5]);
}

struct fleet *fleet_new(struct event_base *base, struct relay *relay, const struct fleet_options *opt)
{
    struct fleet *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->base = base;
    f->relay = relay;
    pgasync_init(&f->db, base);
    pgasync_set_label(&f->db, "fleet");
    f->db.on_notify = on_notify;
    f->db.notify_ctx = f;
    f->engine_db = strdup(opt->engine_db);
    f->lease_ms = opt->lease_ms;
    f->heartbeat_answered_ok = 1;
    f->heartbeat_ms = fleet_heartbeat_interval_ms(opt->lease_ms);
    relay_set_fence_bound(relay, fleet_fence_bound_ms(opt->lease_ms));
    make_id(f, opt->id);
    static const struct fleet_direct_handlers direct = {direct_hold, direct_held, direct_release};
    f->direct = fleet_direct_new(relay, f->id, &direct, f);
    if (!f->direct)
        log_warn("fleet: no key for peer messages (out of memory or randomness); holds are told through the"
                 " database only");
    snprintf(f->listen, sizeof f->listen, "%s", opt->listen ? opt->listen : "");
    snprintf(f->admin, sizeof f->admin, "%s", opt->admin ? opt->admin : "");
    f->members = json_array();
    f->bypassing = json_array();
    f->heartbeat_timer = evtimer_new(base, heartbeat_cb, f);
    f->reconnect_timer = evtimer_new(base, reconnect_cb, f);
    f->co.timeout = evtimer_new(base, coordinator_timeout_cb, f);
    f->co.recheck = evtimer_new(base, recheck_cb, f);
    f->part.deadline = evtimer_new(base, participant_deadline_cb, f);
    if (!f->engine_db || !f->heartbeat_timer || !f->reconnect_timer || !f->co.timeout || !f->co.recheck ||
        !f->part.deadline) {
        fleet_free(f);
        return NULL;
    }
    add_timer(f->heartbeat_timer, f->heartbeat_ms);
    connect_now(f);
    return f;
}

void fleet_free(struct fleet *f)
{
    if (!f)
        return;
    if (f->part.active)
        participant_finish(f, 0, VIA_SELF);
    fleet_direct_free(f->direct);
    pgasync_close(&f->db);
    struct event *timers[] = {f->heartbeat_timer, f->reconnect_timer, f->co.timeout, f->co.recheck,
                              f->part.deadline};
    for (size_t i = 0; i < sizeof timers / sizeof timers[0]; i++)
        if (timers[i])
            event_free(timers[i]);
    json_decref(f->members);
    json_decref(f->bypassing);
    json_decref(f->co.expected);
    free(f->engine_db);
    free(f);
}

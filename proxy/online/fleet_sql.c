/* The fleet's SQL (fleet_sql.h): the statements on the fleet's own
 * connection, in the order a proxy runs them (set up, register, renew the
 * lease, the heartbeat, the hold asked for, acknowledged and released),
 * and the two the contract's transaction runs (the commit check, the wait
 * for every acknowledgement). Text only; the files that send them bind
 * their parameters. */
#include "fleet_sql.h"

#include "migration_state.h"

const char FLEET_SETUP_SQL_TAIL[] =
    ";SET synchronous_commit = off; SET application_name = 'pgtandem fleet';"
    " SET client_connection_check_interval = '1s';"
    " LISTEN " FLEET_CHANNEL_MIGRATIONS "; LISTEN " FLEET_CHANNEL_FLEET;

/* A proxy's lease is its row in pgtandem.fleet_leases (migration_state.h):
 * renewed by a statement that reads and locks nothing else, so that a lock
 * on pgtandem.proxies (an operator's SELECT ... FOR UPDATE) delays no
 * renewal, and no proxy fences its clients for a lease it still holds. */
#define RENEWED_AT(alias) MIG_PROXY_RENEWED_AT(alias)
#define LIVE(alias, param) \
    RENEWED_AT(alias) " > clock_timestamp() - make_interval(secs => " param "::int / 1000.0)"

/* The slot (1..63) goes into cancel keys; a live proxy keeps its own, a
 * restarted one gets the smallest free. Rows dead for long are dropped. */
const char FLEET_REGISTER_SQL[] =
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
const char FLEET_LEASE_SQL[] =
    "INSERT INTO pgtandem.fleet_leases (id, renewed_at) VALUES ($1, clock_timestamp())"
    " ON CONFLICT (id) DO UPDATE SET renewed_at = EXCLUDED.renewed_at";

/* The heartbeat's bookkeeping, after the renewal: what this proxy serves
 * goes into its row unless someone else holds that row locked (it is
 * written again at the next heartbeat; until then the fleet sees the
 * older list, and a session missing from it can only look like one that
 * bypasses the fleet, which stops a cutover rather than lets one through);
 * the fleet, the migration followed, the newest hold and the migrations
 * in flight, oldest first, are read (the columns in the order of
 * fleet_heartbeat.c's HB_ names; $5 the statuses in progress,
 * mig_status_array_literal; $6 the names this proxy routes, which a --db
 * start waits to see before its DDL). */
const char FLEET_HEARTBEAT_SQL[] =
    "WITH mine AS (SELECT id FROM pgtandem.proxies WHERE id = $1 FOR NO KEY UPDATE SKIP LOCKED),"
    " hb AS (UPDATE pgtandem.proxies SET heartbeat_at = clock_timestamp(), sessions = $2::jsonb, routes = $6::jsonb,"
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
    "    AND " RENEWED_AT("c") " > clock_timestamp() - make_interval(secs => c.lease_ms / 1000.0)),"
    "  (SELECT coalesce(json_agg(json_build_object('name', f.name, 'status', f.status) ORDER BY f.started_at), '[]')"
    "     FROM pgtandem.migrations f WHERE f.status = ANY($5::text[])),"
    "  EXISTS (SELECT 1 FROM hb)"
    " FROM (SELECT 1) one"
    " LEFT JOIN LATERAL (" MIG_STATE_FOLLOWED_SQL("$5") ") m ON true"
    " LEFT JOIN LATERAL (SELECT * FROM pgtandem.fleet_holds ORDER BY epoch DESC LIMIT 1) h ON true";

/* The coordinator's own row says it holds too, with its sessions' PIDs.
 * It reads the others' peer addresses and keys with the hold, so they are
 * told on the peer port. A NOTIFY goes with the row only when some live
 * proxy cannot be told so ($7 = 'always': this proxy sends no peer
 * messages; or one registered no peer address): every listening backend
 * and then every proxy wakes for it, which on a fleet of 64 cost the hold
 * some 35 ms of a 2-core machine. Answers (epoch, notified, others). */
const char FLEET_HOLD_SQL[] =
    "WITH h AS (INSERT INTO pgtandem.fleet_holds (migration, coordinator, drain_ms, hold_ms)"
    "           VALUES ($1, $2, $3::int, $4::int) RETURNING epoch),"
    " u AS (UPDATE pgtandem.proxies SET held_epoch = (SELECT epoch FROM h),"
    "       backend_pids = ARRAY(SELECT jsonb_array_elements_text($5::jsonb)::bigint) WHERE id = $2),"
    " unreachable AS (SELECT $7 = 'always' OR EXISTS (SELECT 1 FROM pgtandem.proxies p WHERE p.id <> $2"
    "       AND " LIVE("p", "$6") " AND (p.peer IS NULL OR p.peer_key IS NULL)) AS yes)"
    " SELECT epoch, CASE WHEN unreachable.yes THEN"
    "   pg_notify('" FLEET_CHANNEL_FLEET "', format('hold %s %s %s %s', epoch, $3, $4, $2)) IS NULL END,"
    "  (SELECT coalesce(json_agg(json_build_object('id', p.id, 'peer', p.peer, 'key', p.peer_key)), '[]')"
    "     FROM pgtandem.proxies p WHERE p.id <> $2 AND " LIVE("p", "$6") ")"
    " FROM h, unreachable";

/* The hold told through the database after all, to the proxies the peer
 * port did not reach (a channel broke, or no "held" came back in time):
 * every listener hears it; those that hold already say "held" again in
 * their rows. $1 epoch, $2 drain_ms, $3 hold_ms, $4 coordinator. */
const char FLEET_HOLD_NOTIFY_SQL[] =
    "SELECT pg_notify('" FLEET_CHANNEL_FLEET "', format('hold %s %s %s %s', $1::bigint, $2::int, $3::int, $4::text))";

/* The coordinator writes, in the contract's transaction, the "held" its
 * participants said on the peer port (signed under each one's key, with
 * the backend PIDs of its sessions, or "=" for those of its last
 * heartbeat): the commit check reads them from the rows as it reads those
 * the participants wrote themselves. A printf format: the epoch, then the
 * acknowledgements as a SQL literal of [{"id", "pids"}], "pids" as the
 * message had them ("1,2", checked to be digits and commas; "" none; null:
 * as the row has them). */
const char FLEET_PEER_ACKS_SQL[] =
    "UPDATE pgtandem.proxies p SET held_epoch = %lld,"
    "  backend_pids = coalesce(string_to_array(a.pids, ',')::bigint[], p.backend_pids)"
    " FROM jsonb_to_recordset(%s::jsonb) AS a(id text, pids text) WHERE p.id = a.id;\n";

/* The news of a fleet's cutover, told once its hold is released: $1 name,
 * $2 status. */
const char FLEET_NEWS_SQL[] = "SELECT " MIG_STATE_NOTIFY_OF("$1", "$2");

/* A participant waiting for a release that did not come on the peer port
 * (its channel broke, or the message was lost) reads the outcome here:
 * -> released, committed (no row: no coordinator asked for this hold). */
const char FLEET_HOLD_LOOK_SQL[] =
    "SELECT released_at IS NOT NULL, committed IS TRUE FROM pgtandem.fleet_holds WHERE epoch = $1::bigint";

const char FLEET_LEAVE_SQL[] = "DELETE FROM pgtandem.proxies WHERE id = $1";

/* The live proxies that have not acknowledged, and those that have. */
const char FLEET_ACK_CHECK_SQL[] =
    "SELECT string_agg(id, ', ' ORDER BY id) FILTER (WHERE held_epoch IS DISTINCT FROM $3::bigint"
    "         AND " LIVE("p", "$2") "),"
    "  string_agg(id, E'\\n') FILTER (WHERE held_epoch = $3::bigint)"
    " FROM pgtandem.proxies p WHERE id <> $1";

/* Acknowledges only a hold whose row is open: a hold message that no
 * coordinator wrote (a forged NOTIFY, a replayed or forged peer message)
 * must not leave an epoch in our row that a later hold could take for our
 * acknowledgement. Answers (acknowledged, the row exists, it is released,
 * it committed, our row locked by another). No NOTIFY: only the coordinator reads an acknowledgement,
 * and every listener of a fleet channel wakes for each one (64 proxies
 * acknowledging woke 64 x 63 times; the hold took twice as long). The
 * coordinator hears it on its peer port and reads the table every
 * ACK_RECHECK_MS for what the peer port did not say. */
const char FLEET_ACK_SQL[] =
    "WITH h AS (SELECT released_at IS NOT NULL AS released, committed IS TRUE AS committed"
    "           FROM pgtandem.fleet_holds WHERE epoch = $2::bigint),"
    /* a contract writing our row holds it (our "held" reached it on the
     * peer port): waiting here would stall this connection, the lease's
     * renewal included, until that contract ends */
    " mine AS (SELECT id FROM pgtandem.proxies WHERE id = $1 FOR NO KEY UPDATE SKIP LOCKED),"
    " u AS (UPDATE pgtandem.proxies SET held_epoch = $2::bigint, heartbeat_at = clock_timestamp(),"
    "       backend_pids = ARRAY(SELECT jsonb_array_elements_text($3::jsonb)::bigint)"
    "       WHERE id = (SELECT id FROM mine) AND EXISTS (SELECT 1 FROM h WHERE NOT released) RETURNING id)"
    " SELECT EXISTS (SELECT 1 FROM u), EXISTS (SELECT 1 FROM h), coalesce((SELECT released FROM h), false),"
    "  coalesce((SELECT committed FROM h), false),"
    "  NOT EXISTS (SELECT 1 FROM mine) AND EXISTS (SELECT 1 FROM pgtandem.proxies WHERE id = $1)";

/* Closing a hold waits for a contract in flight (it holds the row) and
 * then reads from the row whether that contract committed. $2 = 'notify':
 * the release is told through the database too (a participant closing
 * the hold itself, or a coordinator some of whose participants the peer
 * port does not reach); otherwise they heard it on the peer port, and a
 * NOTIFY would only wake every listener. */
const char FLEET_RELEASE_SQL[] =
    "WITH u AS (UPDATE pgtandem.fleet_holds SET released_at = clock_timestamp()"
    "           WHERE epoch = $1::bigint AND released_at IS NULL RETURNING committed),"
    " c AS (SELECT coalesce((SELECT committed FROM u),"
    "        (SELECT committed FROM pgtandem.fleet_holds WHERE epoch = $1::bigint), false) AS committed)"
    " SELECT c.committed, CASE WHEN $2 = 'notify' THEN pg_notify('" FLEET_CHANNEL_FLEET "',"
    "        format('release %s %s', $1, CASE WHEN c.committed THEN 1 ELSE 0 END)) IS NULL END FROM c";

/* Runs in the contract's transaction just before COMMIT: it commits only
 * while the hold is still open (a participant that gave up on it closed
 * it, and that waits for this row lock) and every proxy whose lease is
 * current has acknowledged it. It notifies nobody: the coordinator tells
 * the release on the peer port once COMMIT has answered, and the row's
 * `committed` is what a participant that missed it reads. */
const char FLEET_COMMIT_CHECK_SQL[] =
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
    " RAISE NOTICE 'pgtandem: contract steps (ms after BEGIN): commit check done %%',"
    "  round((extract(epoch FROM clock_timestamp() - now()) * 1000)::numeric, 2);"
    " END $fleet$;\n";

/* Runs in the contract's transaction after its DDL: a participant that
 * said "held" on the peer port has its acknowledgement in its row a round
 * trip later, which is waited for here (the contract's locks are taken,
 * but every proxy holds its traffic). Then the sessions that bypass the
 * fleet are read, once every live proxy's sessions are in its row. */
const char FLEET_HELD_WAIT_SQL[] =
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


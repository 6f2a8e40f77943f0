/* The one settings table: every number an operator can set, its range,
 * its default, its help, and the field it is kept in (struct config or
 * struct throttle_settings). The rows live apart from settings.c so that
 * the walk over them knows neither struct: only the rows know where each
 * setting is kept, and config.c reads the table without the table's
 * module reading config.c's. --help and doc/configuration.md are written
 * from these rows (doc/gen_configuration.py). */
#include "settings.h"

#include "config.h"

#define MAX_MS 3600000.0

const struct setting SETTINGS[] = {
    {"max_message_bytes", "--max-message-bytes", SETTING_INT, 1024, 2147483647.0, 1073741824.0, 0, SETTING_PROXY,
     "bytes",
     "largest client message accepted; a larger one (or one under 4 bytes) closes that connection with 08P01",
     CONFIG_FIELD(max_message_bytes, 1)},
    {"buffer_bytes", "--buffer-bytes", SETTING_INT, 4096, 67108864.0, 262144.0, 0, SETTING_PROXY, "bytes",
     "per-direction buffer before backpressure",
     CONFIG_FIELD(buffer_bytes, 1)},
    {"shutdown_timeout_s", "--shutdown-timeout", SETTING_INT, 0, 86400, 30, 0, SETTING_PROXY, "s",
     "SIGTERM waits this long for open transactions",
     CONFIG_FIELD(shutdown_timeout_ms, 1000)},
    {"client_login_timeout_s", "--client-login-timeout", SETTING_INT, 0, 86400, 60, 0, SETTING_PROXY, "s",
     "a client must send its startup packet, finish TLS and log in within it (0: no limit)",
     CONFIG_FIELD(client_login_timeout_ms, 1000)},
    {"cancel_wait_timeout_s", "--cancel-wait-timeout", SETTING_INT, 1, 3600, 10, 0, SETTING_PROXY, "s",
     "a CancelRequest's connection stays open this long waiting for the cancel's delivery",
     CONFIG_FIELD(cancel_wait_timeout_ms, 1000)},
    {"source_failures_per_s", "--source-failures-per-s", SETTING_INT, 1, 1000000, 10, 0, SETTING_PROXY, "/s",
     "unmatched or forwarded cancels and bad startup packets one source address may send (burst 5x)",
     CONFIG_FIELD(source_failures_per_s, 1)},
    {"admin_request_timeout_s", "--admin-request-timeout", SETTING_INT, 1, 86400, 30, 0, SETTING_PROXY, "s",
     "an admin API request must arrive whole within it",
     CONFIG_FIELD(admin_request_timeout_s, 1)},
    {"fleet_lease_ms", "--fleet-lease-ms", SETTING_INT, 300, 600000, 3000, 0, SETTING_PROXY, "ms",
     "a proxy that has not renewed its lease (pgtandem.fleet_leases) for this long is out of the fleet",
     CONFIG_FIELD(fleet_lease_ms, 1)},
    /* transaction pooling (pool_mode "transaction"); max_client_conn holds in both modes */
    {"pool_size", "--pool-size", SETTING_INT, 1, 10000, 20, 0, SETTING_PROXY, "server connections",
     "transaction mode: server connections per pool",
     CONFIG_FIELD(pool_size, 1)},
    {"max_client_conn", "--max-client-conn", SETTING_INT, 1, 1000000, 10000, 0, SETTING_PROXY, "clients",
     "client connections, in either pool mode; one more gets 53300",
     CONFIG_FIELD(max_client_conn, 1)},
    {"max_db_connections", "--max-db-connections", SETTING_INT, 0, 100000, 0, 0, SETTING_PROXY,
     "server connections, 0: pool_size per pool",
     "transaction mode: server connections per database over all its pools",
     CONFIG_FIELD(max_db_connections, 1)},
    {"query_wait_timeout_s", "--query-wait-timeout", SETTING_INT, 0, 86400, 120, 0, SETTING_PROXY, "s",
     "transaction mode: a client waits this long for a server connection before 53300 (0: forever)",
     CONFIG_FIELD(query_wait_timeout_ms, 1000)},
    {"server_idle_timeout_s", "--server-idle-timeout", SETTING_INT, 0, 86400, 600, 0, SETTING_PROXY, "s",
     "transaction mode: an idle server connection is closed after it (0: never)",
     CONFIG_FIELD(server_idle_timeout_ms, 1000)},
    {"server_lifetime_s", "--server-lifetime", SETTING_INT, 0, 604800, 3600, 0, SETTING_PROXY, "s",
     "transaction mode: a server connection this old is closed between transactions (0: never)",
     CONFIG_FIELD(server_lifetime_ms, 1000)},
    /* off, as PgBouncer's: a statement more each time a server changes
     * hands; on for an app whose functions SET what outlives them */
    {"server_reset_query_always", "--server-reset-query-always", SETTING_BOOL, 0, 1, 0, 0, SETTING_PROXY, "",
     "transaction mode: RESET ALL ahead of a client's transaction on a server another client used last, so "
     "settings changed where the pool cannot see them (a function's SET, set_config) reach no other client",
     CONFIG_FIELD(server_reset_always, 1)},
    {"server_login_retry_s", "--server-login-retry", SETTING_INT, 0, 3600, 15, 0, SETTING_PROXY, "s",
     "transaction mode: after a server login fails, clients finding no server are refused at once for this long, "
     "then a login is tried again",
     CONFIG_FIELD(server_login_retry_ms, 1000)},
    {"max_prepared_statements", "--max-prepared-statements", SETTING_INT, 1, 100000, 200, 0, SETTING_PROXY,
     "statements per server connection",
     "transaction mode: clients' named statements kept prepared per server connection",
     CONFIG_FIELD(max_prepared_statements, 1)},
    {"auth_query_cache_s", "--auth-query-cache", SETTING_INT, 0, 86400, 60, 0, SETTING_PROXY, "s",
     "an --auth-query answer (a verifier, or no such role) is reused this long (0: asked at every login)",
     CONFIG_FIELD(auth_query_cache_ms, 1000)},
    /* 5 s: a lookup answers in milliseconds; longer is a stuck or slow
     * database, and the login is refused well before the client's own
     * login timeout, with the reason */
    {"auth_query_timeout_s", "--auth-query-timeout", SETTING_INT, 1, 3600, 5, 0, SETTING_PROXY, "s",
     "an --auth-query lookup not answered within it (connecting included) refuses its login with 08006; "
     "its connection is dropped",
     CONFIG_FIELD(auth_query_timeout_ms, 1000)},
    /* 4: one slow role holds one connection, not every login behind it */
    {"auth_query_connections", "--auth-query-connections", SETTING_INT, 1, 64, 4, 0, SETTING_PROXY,
     "connections",
     "--auth-query lookups in flight at once, each on its own connection, opened as logins need them",
     CONFIG_FIELD(auth_query_connections, 1)},
    {"max_rows_per_sec", NULL, SETTING_INT, 0, 1e9, 0, 1, SETTING_THROTTLE, "rows/s",
     "backfill rows per second at most (0: no limit)",
     THROTTLE_FIELD(max_rows_per_sec, 1)},
    {"target_ms", NULL, SETTING_INT, 1, 60000, 50, 1, SETTING_THROTTLE, "ms",
     "the backfill sizes its batches to take about this long",
     THROTTLE_FIELD(target_ms, 1)},
    {"sleep_ratio", NULL, SETTING_NUMBER, 0, 100, 0, 1, SETTING_THROTTLE, "x batch time",
     "the backfill sleeps this many times its batch's time after each batch",
     THROTTLE_FIELD(sleep_ratio, 1)},
    {"max_app_p99_ms", NULL, SETTING_INT, 0, MAX_MS, 0, 1, SETTING_THROTTLE, "ms",
     "an absolute limit on the application's p99 latency the backfill keeps; set, it replaces app_p99_budget (0: off)",
     THROTTLE_FIELD(max_app_p99_ms, 1)},
    /* 1.5: what the app's users do not notice; the baseline is measured by
     * the proxy, so an operator need not know the app's normal latency */
    {"app_p99_budget", NULL, SETTING_NUMBER, 0, 100, 1.5, 1, SETTING_THROTTLE, "x baseline p99",
     "the backfill keeps the app's p99 per route within this many times its p99 measured without it (0: off)",
     THROTTLE_FIELD(app_p99_budget, 1)},
    /* 5 ms: a p99 no user notices. Without it an app of 1 ms was kept
     * within 2 ms and the demo's backfill ran at a tenth of its speed to
     * protect that millisecond */
    {"app_p99_floor_ms", NULL, SETTING_INT, 0, MAX_MS, 5, 1, SETTING_THROTTLE, "ms",
     "the ratio budget never holds the backfill back while the app's p99 is under this (0: no floor)",
     THROTTLE_FIELD(app_p99_floor_ms, 1)},
    {"max_replica_lag_ms", NULL, SETTING_INT, 0, MAX_MS, 0, 1, SETTING_THROTTLE, "ms",
     "the backfill waits while a replica lags more than this (0: off)",
     THROTTLE_FIELD(max_replica_lag_ms, 1)},
    {"paused", NULL, SETTING_BOOL, 0, 1, 0, 1, SETTING_THROTTLE, "",
     "the backfill is paused",
     THROTTLE_FIELD(paused, 1)},
    /* 2: the database's cores are not known from here (a managed compute may
     * have one); a second batch at once is what a 2-core server gains from,
     * and any throttle takes it back to one */
    {"backfill_workers", NULL, SETTING_INT, 1, 16, 2, 1, SETTING_THROTTLE, "connections",
     "batches the backfill runs at once, each key range on its own connection; one while any throttle holds",
     THROTTLE_FIELD(workers, 1)},
    {"timeout_ms", NULL, SETTING_INT, 1, 600000, 2000, 0, SETTING_QUERY, "ms",
     "POST /pause: traffic is held at most this long",
     NO_FIELD},
    {"drain_timeout_ms", NULL, SETTING_INT, 1, 600000, 2000, 0, SETTING_QUERY, "ms",
     "the cutover holds traffic at most this long while transactions finish",
     NO_FIELD},
    {"lock_timeout_ms", NULL, SETTING_INT, 1, 600000, 200, 0, SETTING_QUERY, "ms",
     "the contract's lock_timeout",
     NO_FIELD},
    {"statement_budget_ms", NULL, SETTING_INT, 1, MAX_MS, 5000, 0, SETTING_QUERY, "ms",
     "the contract's statement_timeout",
     NO_FIELD},
    {"attempts", NULL, SETTING_INT, 1, 1000, 10, 0, SETTING_QUERY, "",
     "contract attempts before giving up",
     NO_FIELD},
    {"force", NULL, SETTING_BOOL, 0, 1, 0, 0, SETTING_QUERY, "",
     "go on despite sessions that bypass the proxies",
     NO_FIELD},
    /* a week at most: the old shape's columns cost writes until finalize */
    {"revert_window_s", NULL, SETTING_INT, 0, 604800, 0, 0, SETTING_QUERY, "s",
     "complete keeps the old shape this long for a revert",
     NO_FIELD},
    {NULL, NULL, SETTING_INT, 0, 0, 0, 0, SETTING_PROXY, NULL, NULL, NO_FIELD},
};

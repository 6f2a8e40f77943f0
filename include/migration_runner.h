/* The engine inside the proxy: runs a migration submitted through the admin
 * API. Expand and the bookkeeping around it run in a child `pgtandem
 * migrate` process (the same code as the CLI, off the event loop); the
 * backfill batches and the contract run on a non-blocking libpq connection
 * driven by the proxy's loop, and the contract runs while client traffic is
 * paused at transaction boundaries. */
#ifndef PGTANDEM_MIGRATION_RUNNER_H
#define PGTANDEM_MIGRATION_RUNNER_H

struct server;
struct migration_runner;
struct json_t;

struct migration_runner *runner_new(struct server *srv);
void runner_free(struct migration_runner *r);

/* The version schema a session declaring `version` should see first, or
 * NULL when that migration is not in progress here. */
const char *runner_version_schema(const struct migration_runner *r, const char *version);

#endif

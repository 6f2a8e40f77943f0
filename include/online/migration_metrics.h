/* GET /metrics series for migrations and the fleet: the numbers stay with
 * the modules that own them (migration_runner.c, cutover.c, fleet.c, the
 * relay); this module only renders them in Prometheus's text format. Each
 * writer is an admin_metrics_fn (admin.h); ctx is what it reads. */
#ifndef PGTANDEM_MIGRATION_METRICS_H
#define PGTANDEM_MIGRATION_METRICS_H

struct evbuffer;

/* ctx: struct relay. pgtandem_build_info, pgtandem_sessions{version}. */
void migration_metrics_write_relay(void *ctx, struct evbuffer *out);
/* ctx: struct migration_runner. pgtandem_migration_* for the migration it
 * knows (none before the first: the families are declared, empty). */
void migration_metrics_write_runner(void *ctx, struct evbuffer *out);
/* ctx: struct fleet. pgtandem_fleet_*. */
void migration_metrics_write_fleet(void *ctx, struct evbuffer *out);

#endif

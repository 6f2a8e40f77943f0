/* bin/pgtandem migrate ... --proxy URL: the same commands driven through a
 * running proxy's admin API instead of a direct database connection. */
#ifndef PGTANDEM_MIGRATE_REMOTE_H
#define PGTANDEM_MIGRATE_REMOTE_H

#include <stddef.h>

/* command: "start" (file required), "status" (json: print the raw state),
 * "complete", "finalize", "revert" or "rollback" (file: the migration's
 * name, or NULL for the one the proxy's engine runs; the proxy refuses
 * another). proxy_url: "http://HOST:PORT". The bearer token
 * comes from $PGTANDEM_ADMIN_TOKEN. force: complete despite sessions that
 * bypass the proxies. Returns the process exit status:
 * 0 success, 1 operational failure, 2 bad input. */
/* revert_window_s: complete keeps the old shape that long (0: contract at once). */
int migrate_remote_main(const char *command, const char *proxy_url, const char *file, int json, int force,
                        int revert_window_s);
/* start with the request body in memory: a converted .sql file, a chain. */
int migrate_remote_start(const char *proxy_url, const char *body, size_t len);

/* One line per proxy ({id, listen, sessions, heartbeat_age_ms, live?});
 * self_id (may be NULL) is marked as this one. For both status commands. */
struct json_t;
void migrate_print_proxies(struct json_t *members, const char *self_id);

#endif

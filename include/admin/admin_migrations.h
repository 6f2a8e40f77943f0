/* The admin API's /migrations routes: HTTP in, runner_request out. The
 * only place the admin API meets the engine. */
#ifndef PGTANDEM_ADMIN_MIGRATIONS_H
#define PGTANDEM_ADMIN_MIGRATIONS_H

struct relay;
struct evhttp_request;

/* An admin_route_fn (admin.h); ctx is the struct migration_runner. */
int admin_migrations_route(struct relay *relay, struct evhttp_request *req, const char *path, void *ctx);

#endif

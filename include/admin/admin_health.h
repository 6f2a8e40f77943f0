/* GET /healthz and GET /readyz: the admin API's answers to a load
 * balancer's or an orchestrator's probes (no token; see admin_health.c). */
#ifndef PGTANDEM_ADMIN_HEALTH_H
#define PGTANDEM_ADMIN_HEALTH_H

struct relay;
struct evhttp_request;
struct admin_health;

struct admin_health *admin_health_new(struct relay *relay);
/* Forgets the requests still waiting (their connections are the HTTP
 * server's to close) and the probe in flight. */
void admin_health_free(struct admin_health *h);

/* 1 when path is /healthz or /readyz and the request is (or will be)
 * answered; 0 for any other path. Only GET reaches here. */
int admin_health_route(struct admin_health *h, struct evhttp_request *req, const char *path);

#endif

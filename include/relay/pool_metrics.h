/* Transaction pooling's pools in Prometheus text: one series per pool
 * (database, user, version schema) for what GET /pools shows as JSON. */
#ifndef PGTANDEM_POOL_METRICS_H
#define PGTANDEM_POOL_METRICS_H

struct evbuffer;
struct relay;

/* Appends the pgtandem_pool_* families (nothing in session mode). */
void pool_metrics_write(struct relay *relay, struct evbuffer *out);

#endif

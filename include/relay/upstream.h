/* Opening a connection to the upstream Postgres: TCP (or a Unix socket) to
 * the resolved address, SSLRequest, and the TLS handshake with SNI and
 * verification. */
#ifndef PGTANDEM_UPSTREAM_H
#define PGTANDEM_UPSTREAM_H

#include <stdint.h>

#include "compiler.h"
#include "relay.h"

struct sbuf;
struct upstream_connect;

void upstream_address_init(struct relay *relay);
void upstream_address_free(struct relay *relay);

/* Called once: with a ready stream buffer (ownership passes to the callee),
 * or with sb NULL and a message naming the upstream and the reason. */
typedef void (*upstream_ready_fn)(void *ctx, struct sbuf *sb, const char *error);

struct upstream_connect *upstream_connect_start(struct relay *relay, upstream_ready_fn ready, void *ctx);
/* Abandons a connection attempt; the callback will not be called. */
void upstream_connect_cancel(struct upstream_connect *uc);

/* Sends a CancelRequest for (pid, key) over a fresh upstream connection
 * and calls done(relay, waiter) once Postgres has closed it (it does so after
 * signalling the backend), or when that fails or cancel_wait_timeout runs
 * out; done may be NULL. 0 when on its way (done follows, never from inside
 * this call), -1 when it could not be started (done is not called). */
PGT_MUSTCHECK int upstream_send_cancel(struct relay *relay, unsigned pid, unsigned key, cancel_done_fn done,
                                       uint64_t waiter);
/* Drops the requests still in flight, without calling their done (exit). */
void upstream_cancels_free(struct relay *relay);

#endif

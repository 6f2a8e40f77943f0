/* CancelRequests between the proxies of a fleet, after PgBouncer's peering:
 * the peer listener, which reads one CancelRequest per connection and
 * handles it here, and the forwarding of a CancelRequest whose key another
 * proxy issued to that proxy's peer listener. Below the sessions: what the
 * listener reads goes up through the handler it is given. Connections
 * that carry the fleet's messages instead are peer_msg.h's. */
#ifndef PGTANDEM_PEER_H
#define PGTANDEM_PEER_H

#include <stddef.h>
#include <stdint.h>

#include "compiler.h"
#include "relay.h"

struct relay_peer;

/* A cancel key's top 6 bits: the slot of the proxy that issued it (1..63;
 * 0: not in a fleet). The PID next to the key is the backend's real one,
 * which any user of the database can read in pg_stat_activity, so the 26
 * random bits left are all that stop a forged cancel: see source_limit.h
 * for how fast they can be guessed at. */
#define PEER_SLOT_SHIFT 26
#define PEER_MAX_SLOT 63
#define PEER_KEY_RANDOM_MASK 0x03ffffffu

/* Opens the peer listener (unless configured off) and records the address
 * it is bound to. `cancel_here` handles what it reads; it must not forward
 * again, which is what keeps a request from going round in circles. */
PGT_MUSTCHECK int peer_listen(struct relay *relay, peer_cancel_fn cancel_here, char *err, size_t errlen);

/* A CancelRequest from `from` (the client's "host:port") that matched no
 * session here: when its key carries the slot of another known proxy,
 * sends it on to that proxy's peer listener (CANCEL_SENT); done(relay,
 * waiter) follows once that proxy closed the connection (it does so after
 * Postgres has), or the forward failed or cancel_wait_timeout ran out.
 * CANCEL_NOT_SENT when it names another proxy but was not sent (over the
 * source's limit, too many in flight; logged); CANCEL_NO_MATCH when the key
 * names no other proxy. */
PGT_MUSTCHECK enum cancel_result peer_forward_cancel(struct relay *relay, uint32_t pid, uint32_t key,
                                                     const char *from, cancel_done_fn done, uint64_t waiter);

/* See relay_set_fleet_slot and relay_set_fleet_peers in relay_control.h. */
void peer_set_slot(struct relay *relay, int slot);
void peer_set_peers(struct relay *relay, const struct relay_peer *peers, size_t n);

/* Closes the listener, its connections and the forwards in flight, and
 * forgets the peers. */
void peer_free(struct relay *relay);

#endif

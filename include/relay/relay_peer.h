/* Another proxy of the fleet as the relay needs to know it: where to send
 * a CancelRequest whose key carries that proxy's slot; and the handler of
 * the messages proxies send each other on the peer port. Shared by
 * relay_control.h (the fleet pushes them in) and peer.c, peer_msg.c (which
 * use them). */
#ifndef PGTANDEM_RELAY_PEER_H
#define PGTANDEM_RELAY_PEER_H

#include <stdint.h>

struct relay_peer {
    int slot;               /* 1..63 (PEER_MAX_SLOT) */
    char address[128];      /* "host:port" of that proxy's peer listener */
};

/* A message (NUL-terminated text) on a peer channel; msg NULL: the channel
 * closed or failed. On a channel another proxy opened, returning 0 refuses
 * the message: the channel is closed and the sender's source charged when
 * it is a stranger. */
typedef int (*relay_peer_msg_fn)(void *ctx, uint64_t channel, const char *msg);

#endif

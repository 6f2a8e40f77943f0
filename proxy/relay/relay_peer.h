/* Another proxy of the fleet as the relay needs to know it: where to send
 * a CancelRequest whose key carries that proxy's slot. Data only, shared
 * by relay_control.h (the fleet pushes the list in) and peer.c (which uses it). */
#ifndef PGTANDEM_RELAY_PEER_H
#define PGTANDEM_RELAY_PEER_H

struct relay_peer {
    int slot;               /* 1..63 (PEER_MAX_SLOT) */
    char address[128];      /* "host:port" of that proxy's peer listener */
};

#endif

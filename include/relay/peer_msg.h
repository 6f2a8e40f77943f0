/* Short messages between the proxies of a fleet on the peer port, beside
 * the CancelRequests (peer.h): a connection whose first 8 bytes are a
 * message header instead of a CancelRequest's carries a stream of
 * messages both ways, framed like Postgres's startup packets
 * ([u32 length including these 8 bytes][u32 PEER_MSG_CODE][text]). What the
 * text means is the fleet's (online/fleet_direct.c); the relay only frames
 * it, bounds it and charges a stranger's source for what the handler
 * refuses. */
#ifndef PGTANDEM_PEER_MSG_H
#define PGTANDEM_PEER_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "compiler.h"
#include "relay_peer.h"
#include "relay.h"

struct sbuf;

/* 'PGTF': no startup, SSL, GSS or cancel code of Postgres. */
#define PEER_MSG_CODE 0x50475446u
#define PEER_MSG_HEADER 8
#define PEER_MSG_MAX 1024 /* text bytes in one message */

/* peer.c hands over a connection whose first 8 bytes are a message
 * header (still in sb->in): the channel owns sb from now on. `stranger`:
 * it comes from no known proxy's host. Returns -1 (sb freed) when it
 * cannot be taken. */
int peer_msg_adopt(struct relay *relay, struct sbuf *sb, const char *from, int stranger);

/* Whether the 4-byte length at the start of a connection can begin a message. */
int peer_msg_length_ok(uint32_t length);

void peer_msg_set_handler(struct relay *relay, relay_peer_msg_fn fn, void *ctx);
/* A channel to another proxy's peer listener ("host:port", numeric): its
 * id, 0 when it cannot be opened (logged). Messages sent before the
 * connection is up wait for it. */
uint64_t peer_msg_open(struct relay *relay, const char *address);
/* -1 when the channel is gone or the message too long. */
PGT_MUSTCHECK int peer_msg_send(struct relay *relay, uint64_t channel, const char *msg);
/* Closes once what was sent is written (the handler is not told). */
void peer_msg_close(struct relay *relay, uint64_t channel);
/* Every channel, at shutdown. */
void peer_msg_free_all(struct relay *relay);

#endif

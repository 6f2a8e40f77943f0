/* What strangers can make the proxy do: a CancelRequest that matches no
 * session, a startup packet Postgres would refuse, or a peer message the
 * fleet refuses, costs its source address a token. A source out of tokens has its CancelRequests closed
 * unread (a forged one can no longer try a key) and its bad packets closed
 * without a reply; and the log gets at most a line a second per source,
 * the rest summed up in one line, so unauthenticated traffic cannot fill
 * the disk. A source is an IPv4 address, an IPv6 /64 (what one host
 * usually holds) or all Unix-socket clients together; a small fixed table
 * keeps the recent ones, the longest unseen making room. */
#ifndef PGTANDEM_SOURCE_LIMIT_H
#define PGTANDEM_SOURCE_LIMIT_H

#include "relay.h"

enum source_event {
    SOURCE_CANCEL_UNKNOWN,   /* a CancelRequest for no session this proxy knows */
    SOURCE_CANCEL_FORWARDED, /* sent on to the proxy its key names: it may be forged, so it costs too */
    SOURCE_BAD_STARTUP,      /* a startup packet or TLS handshake Postgres would refuse */
    SOURCE_BAD_PEER_MESSAGE, /* a message on the peer port the fleet refused (not from a member) */
    SOURCE_THROTTLED,        /* a CancelRequest over the limit: closed without being looked at */
    SOURCE_EVENTS
};

/* A source's burst: this many seconds of its rate. */
#define SOURCE_BURST_S 5

/* Whether `addr` ("host:port", "[v6]:port" or "unix") has a token left, so
 * that its CancelRequest may be looked up. When not, counts it as
 * throttled (summed up in the log). */
int source_limit_allows(struct relay *relay, const char *addr);

/* Counts a failure of `addr`, taking a token when `charge`, and logs the
 * line at info unless that source (or the proxy as a whole) logged one
 * within the last second; then it goes into the next summary. Returns 0
 * when a token was due and none was left (the caller closes without a
 * reply), else 1. */
int source_limit_failure(struct relay *relay, const char *addr, enum source_event ev, int charge, const char *fmt,
                         ...) __attribute__((format(printf, 5, 6)));

/* Logs what is still unsummed and frees the table (exit). */
void source_limits_free(struct relay *relay);

#endif

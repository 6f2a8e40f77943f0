/* Transaction pooling's named statements: a client's Parse "N" is kept in
 * its session's registry (prepared.h) and prepared on a server under a name
 * made from its text and parameter types ("pgt_<hash>"), on whichever
 * server runs the client's Bind or Describe of it, when that server does
 * not have it yet. Clients with the same statement share it on a server.
 * Each server keeps at most max_prepared_statements; the least recently
 * bound goes first. The replies the client must not see, or must see
 * without the server being asked, follow the session's reply queue. */
#ifndef PGTANDEM_STATEMENT_MAP_H
#define PGTANDEM_STATEMENT_MAP_H

#include <stddef.h>
#include <stdint.h>

#include "proto.h"

struct session;
struct evbuffer;
struct pool_server;

enum stmt_map_result {
    STMT_NEED_MORE,      /* the part of the message to rewrite is not buffered yet */
    STMT_STREAM,         /* pass the message through as it is */
    STMT_CONSUMED,       /* the message was taken from the input, rewritten or answered */
    STMT_STREAM_REST,    /* its start was rewritten: c2s_remaining bytes of it follow as they are */
    STMT_FAILED,         /* the session was failed (out of memory, a malformed message) */
};

/* A client message at its start, while a server is lent. */
enum stmt_map_result stmt_map_client_message(struct session *s, struct evbuffer *in, const struct msg_header *h,
                                             size_t avail);
/* A server message at its start: 1 when it answers one of the proxy's own
 * messages (drop it). */
int stmt_map_server_message(struct session *s, uint8_t type);
/* Writes the replies the proxy owes the client now, in their turn. */
void stmt_map_answer_due(struct session *s);

/* The server's statement cache. */
void stmt_cache_free(struct pool_server *ps);
/* Appends a Close of every statement the server has and a Sync; returns 1
 * when anything was appended (its ReadyForQuery is owed), 0 otherwise. The
 * cache is empty afterwards. */
int stmt_cache_write_close_all(struct pool_server *ps, struct evbuffer *out);

#endif

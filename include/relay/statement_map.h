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

struct evbuffer;
struct pool_server;
struct prepared;
struct reply_queue;

/* The client's unnamed statement. Postgres keeps it across Syncs, until the
 * next unnamed Parse, a simple Query or a Close of it, but a client's next
 * Sync may run on another server: its Parse is kept to prepare it there
 * before a Bind or Describe of it (or, when the client has none, the
 * server's is closed, so the client hears 26000 as Postgres would answer). */
/* What a statement does to the client's session when it runs, worked out
 * from its text once (a driver binds the same statement over and over). */
enum stmt_effect {
    STMT_EFFECT_UNKNOWN = 0, /* not looked at yet */
    STMT_EFFECT_NONE,        /* nothing the pool books */
    STMT_EFFECT_SET,         /* a SET the pool carries (pin.h: pin_carried_set) */
};

struct unnamed_statement {
    uint8_t *parse;     /* the client's Parse "", len bytes (0: it has no unnamed statement) */
    uint32_t len, cap;  /* the buffer is kept for the next one: most drivers send one per query */
    int on_server;      /* the lent server's unnamed statement is the client's (or none, as the client's) */
    uint8_t effect;     /* enum stmt_effect of the one kept */
};

/* The statement a Bind bound: its Parse as the client sent it, and where
 * what it does to the session is kept. parse NULL: not a Bind, or one of
 * a statement the client has not prepared. */
struct stmt_bound {
    const uint8_t *parse;
    uint32_t len;
    uint8_t *effect;
};

/* The client has no unnamed statement any more (its buffer is kept). */
void unnamed_statement_forget(struct unnamed_statement *u);
void unnamed_statement_free(struct unnamed_statement *u);

/* What the mapping works on, handed in by the session for each message
 * (the module keeps nothing of its own). */
struct stmt_map {
    struct prepared **registry;     /* the client's named statements */
    struct reply_queue *replies;    /* what the lent server owes */
    struct pool_server *server;     /* the lent server (what goes to it: server->sb->out) */
    struct unnamed_statement *unnamed; /* the client's unnamed statement */
    uint32_t rest;                  /* out, STMT_STREAM_REST: bytes of the message still to pass */
    struct stmt_bound bound;        /* out, a Bind: the statement it bound */
    const char *sqlstate, *error;   /* out, STMT_FAILED: what the client is told */
};

enum stmt_map_result {
    STMT_NEED_MORE,      /* the part of the message to rewrite is not buffered yet */
    STMT_STREAM,         /* pass the message through as it is */
    STMT_CONSUMED,       /* the message was taken from the input, rewritten or answered */
    STMT_STREAM_REST,    /* its start was rewritten: m->rest bytes of it follow as they are */
    STMT_FAILED,         /* out of memory, a malformed message: the session ends with m->error */
};

/* A client message at its start, while a server is lent. */
enum stmt_map_result stmt_map_client_message(struct stmt_map *m, struct evbuffer *in, const struct msg_header *h,
                                             size_t avail);
/* A server message at its start: 1 when the client must not see it (it
 * answers one of the proxy's own messages, or it is an error the proxy
 * replaced, writing its own to `to_client`). */
int stmt_map_server_message(struct reply_queue *q, struct pool_server *ps, struct unnamed_statement *u,
                            uint8_t type, struct evbuffer *to_client);
/* Writes the replies the proxy owes the client now, in their turn; 1 when
 * it wrote any. */
int stmt_map_answer_due(struct reply_queue *q, struct evbuffer *to_client);

#endif

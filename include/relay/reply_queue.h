/* The replies a server owes, in order: one entry per message sent to it
 * that Postgres answers (Parse '1', Bind '2', Close '3', Describe, Execute,
 * Sync 'Z', Query and FunctionCall up to their 'Z'). Transaction pooling
 * rewrites a client's named statements (statement_map.c): it sends Parse
 * messages of its own, whose replies the client must not see (DROP), and
 * answers some client messages itself, in their turn (SYNTH). The queue
 * says, for each server message, whether it completes an entry and what
 * to do with it; after an error it skips, as Postgres does, to the Sync.
 * Pure: no I/O. */
#ifndef PGTANDEM_REPLY_QUEUE_H
#define PGTANDEM_REPLY_QUEUE_H

#include <stdint.h>

enum reply_action {
    REPLY_PASS,   /* the client's own message: its reply goes to the client */
    REPLY_DROP,   /* ours: its reply is dropped */
    REPLY_SYNTH,  /* not sent: the proxy answers it in its turn */
    REPLY_FAIL,   /* ours, sent to fail where Postgres fails the client's message (so the
                     server skips to the Sync and aborts a transaction block as Postgres
                     would): the server's error is replaced by the entry's own */
};

/* kinds: 'P' Parse of a named statement, 'p' of the unnamed one, 'B' Bind, 'C' Close, 'd' Describe statement ('t' then
 * 'T' or 'n'), 'D' Describe portal, 'E' Execute, 'S' Sync, 'Q' Query, 'F'
 * FunctionCall. */
struct reply_entry {
    uint8_t kind;
    uint8_t action;
    uint64_t hash;        /* the server-side statement a Parse creates (0: none) */
    uint8_t *error;       /* REPLY_FAIL: the ErrorResponse the client hears (owned) */
};

struct reply_queue {
    struct reply_entry *e;
    uint32_t head, count, cap;
    int skipping;         /* an error: the server ignores everything up to the next Sync */
};

void reply_queue_init(struct reply_queue *q);
void reply_queue_free(struct reply_queue *q);
/* Empty again, keeping its memory (a server lent anew owes nothing). */
void reply_queue_reset(struct reply_queue *q);
/* A message sent (or, SYNTH, not sent) to the server. 1 when queued, 0 when
 * the server will skip it (after an error, before a Sync; a SYNTH entry
 * then must not be answered either), -1 when out of memory. */
int reply_queue_push(struct reply_queue *q, uint8_t kind, enum reply_action action, uint64_t hash);
/* A REPLY_FAIL entry whose ErrorResponse is `error` (malloc'd, taken over:
 * freed here when the entry is not queued). Returns as reply_queue_push. */
int reply_queue_push_failure(struct reply_queue *q, uint8_t kind, uint8_t *error);

/* What a server message means for the queue. */
struct reply_step {
    int drop;             /* the message answers one of ours: the client must not see it */
    uint64_t failed_hash; /* a Parse that failed: that statement is not on the server */
    uint8_t *error;       /* a REPLY_FAIL entry's error, to send in place of the server's (the
                             caller frees it) */
    int failed_unnamed;   /* a Parse of the unnamed statement failed: the server has none now */
};
/* Called at the start of every server message (its type). */
struct reply_step reply_queue_on_server(struct reply_queue *q, uint8_t type);
/* The reply the proxy owes the client now ('1' ParseComplete or '3'
 * CloseComplete), popping it, or 0 when the next reply is the server's. */
uint8_t reply_queue_take_synth(struct reply_queue *q);
/* Nothing owed: every reply has come (or been given). */
int reply_queue_empty(const struct reply_queue *q);
/* 1 when a server message of `type` at this point is the client's and
 * reaches it as it is, with no reply of the proxy's before it: no SYNTH
 * entry first, and not an error (which may be swapped for a REPLY_FAIL's). */
int reply_queue_passes(const struct reply_queue *q, uint8_t type);

#endif

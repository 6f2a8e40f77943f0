/* What the parts of a client session share, for session.c,
 * session_login.c, session_relay.c and session_statements.c only: the rest of the proxy uses
 * session.h. session.c owns the session (its state, its cancel key, how
 * it closes) and hands each stream-buffer event to its part;
 * session_login.c runs the startup phase and the login and then hands the
 * session to session_relay.c, which never calls back into the login. */
#ifndef PGTANDEM_SESSION_INTERNAL_H
#define PGTANDEM_SESSION_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "pool.h"
#include "proto.h"
#include "sbuf.h"

/* Pointers only: each part includes session.h itself, and this header
 * stays a leaf below it (the public header never sees the parts'). */
struct session;
struct session_extra;

#define MAX_AUTH_MESSAGE 65536u /* Authentication*, BackendKeyData: small by nature */
#define PROTO_MAX_AUTH_MESSAGE MAX_AUTH_MESSAGE

/* session->proxy_header: what a connection's first bytes may be: a PROXY
 * protocol header only from a source in proxy_protocol_trusted, and from
 * such a source they must be one (as HAProxy's accept-proxy has it), so
 * that a client the balancer passes through can never pick its own
 * address; then, that they were read. */
enum { PROXY_HEADER_REFUSED = 0, PROXY_HEADER_REQUIRED, PROXY_HEADER_READ };

/* The callbacks of a session's database connection (session.c). */
extern const struct sbuf_ops session_backend_ops;

/* ---- session.c ---- */

/* pool_mode "transaction": a server is lent per transaction (pool.h). */
int session_pooled(const struct session *s);
/* A startup parameter of the session's StartupMessage (NULL before it came). */
const char *session_param(const struct session *s, const char *key);
/* The client's address: a trusted PROXY header's, else the peer's. */
const char *session_addr(const struct session *s);
/* The side struct, made on first use; NULL when out of memory. */
struct session_extra *session_extra_get(struct session *s);
/* "host:port", or "unix" (and 1) for anything but IPv4 and IPv6. */
int session_format_addr(char *out, size_t cap, const struct sockaddr *addr);
/* Records the version schema put first on the session's search_path
 * (NULL: none). 0, or -1 out of memory (the record then says none). */
int session_set_routed_schema(struct session *s, const char *schema);
/* At a transaction boundary with nothing of the client's or ours in flight. */
int session_idle_at_boundary(const struct session *s);
/* Lets the sockets' buffers of an idle session go (see session.c). */
void session_release_idle_buffers(struct session *s);
/* Keeps relay->counts.busy right: after every change of the state or the tracker. */
void session_sync_busy(struct session *s);
void session_stop_login_timer(struct session *s);
/* Gives the session a new cancel key, replacing any it had (a second
 * BackendKeyData), findable by session_find_by_cancel_key: random, held by
 * no other live session, with the fleet slot in its top bits. 0, or -1
 * when there is no randomness to be had (the session has no key then). */
int session_issue_cancel_key(struct session *s);
/* Callers up the stack may still hold `s`: freed on the next loop turn. */
void session_free_later(struct session *s);
/* session_fail without the log line, which the caller has written (or left out). */
void session_close_with_error(struct session *s, const char *sqlstate, const char *msg);
/* Closes without a word, as Postgres does before a startup packet. */
void session_fail_silently(struct session *s);
/* Auth "scram": the exchange failed; the client hears why, maybe late. */
void session_fail_authentication(struct session *s);
void session_protocol_violation(struct session *s, const char *what);

/* ---- session_login.c ---- */

/* Client bytes in SESS_STARTUP: the PROXY header, then startup packets. */
void session_read_startup(struct session *s);
/* Client messages in SESS_CLIENT_AUTH: the SCRAM exchange. */
void session_read_client_auth(struct session *s);
/* SESS_TLS_ACCEPT once the 'S' is flushed: the TLS handshake. */
void session_start_client_tls(struct session *s);
/* The pool's answers to a session that waited for a server (its first
 * login's welcome, or its next transaction). */
void session_server_lent(struct pool_waiter *w, struct pool_server *ps);
void session_server_not_lent(struct pool_waiter *w, const char *sqlstate, const char *message);

/* A look at a whole message the proxy reads before it passes on. */
enum peek_result {
    PEEK_DONE,      /* looked at (or nothing to look at): the message may go on */
    PEEK_NEED_MORE, /* the message is not buffered whole yet: stop until more bytes came */
};

/* ---- session_statements.c (transaction pooling) ---- */

struct stmt_bound;
struct msg_header;

/* ---- session_stream.c: one direction's bytes ---- */

/* One direction of the relay at a message boundary. */
enum next_result {
    NEXT_MESSAGE,    /* a message starts here (its header read) and the other side has room */
    NEXT_WAIT,       /* wait for more bytes, or for the other side to drain */
    NEXT_BAD_LENGTH, /* the header's length is impossible: a protocol violation */
};

/* One direction of the relay: where bytes come from and go to, and the
 * state of the message being passed through. */
struct relay_dir {
    struct sbuf *from, *to;
    uint32_t *remaining;  /* bytes of the current message still to pass */
    uint8_t *blocked;     /* waiting for `to` to drain */
    uint8_t *discard;     /* drop the current message instead (may be NULL) */
    uint64_t *bytes, *metric;
    uint32_t max_length;
    /* Batching (server to client): whole messages that only stream stay at
     * the head of `in` (`held` bytes) and move to `out` together, before
     * anything reads `in` at its head or writes `out` (session_pass_held). A reply
     * that came in one read then moves as the chain it was read into, not
     * copied message by message into a new one. */
    int batch;
    size_t held;
    struct evbuffer *out;
    uint8_t head[PROTO_HEADER_LEN + 1]; /* the next message's first bytes, as many as there are */
};

/* Passes the rest of the current message, then looks at the next header
 * (*h filled for NEXT_MESSAGE; *avail: the bytes there are from its start,
 * held bytes before it not counted). */
enum next_result session_next_message(struct session *s, struct relay_dir *d, struct msg_header *h, size_t *avail);
/* Moves the held messages to `out`, in order, before whatever comes next. */
void session_pass_held(struct relay_dir *d);

struct evbuffer;
/* The client keeps its server for good, for `why` (logged once). */
void session_pin(struct session *s, const char *why);
/* A client's Query, Parse or FunctionCall at its start, before it goes on:
 * pins, books a simple Query's SET, answers a DEALLOCATE (rewriting the
 * message in `in`: *h and *avail follow). */
enum peek_result session_check_statement(struct session *s, struct evbuffer *in, struct msg_header *h,
                                         size_t *avail);
/* A Bind went on: the SET its statement is, if any, runs now. */
void session_note_bound(struct session *s, const struct stmt_bound *b);
/* The server's answers to the client's SETs: an ErrorResponse fails the
 * SETs of the unit it ends, and those bound after it before the Sync (the
 * server skips them); a ReadyForQuery (`status` as it says) books
 * those its unit ran, outside a block; Syncs a COPY made the server skip
 * (`skipped`) leave SETs whose unit never ends, so the session keeps its
 * server. Freeing drops what is left. */
void session_sets_error(struct session *s);
void session_sets_ready(struct session *s, uint8_t status);
void session_sets_skipped(struct session *s, uint32_t skipped);
void session_sets_free(struct session *s);
/* A server's CommandComplete at its start: DEALLOCATE ALL and DISCARD ALL
 * leave no statements (and no SETs) to remember. */
/* 1 when its length is one of theirs (only then is its tag read). */
int session_command_tag_matters(const struct msg_header *h);
enum peek_result session_note_command_complete(struct session *s, struct evbuffer *in, const struct msg_header *h,
                                               size_t avail);
/* A server's EmptyQueryResponse at its start: 1 when it answers a
 * DEALLOCATE the pool answered, written to `out` as its CommandComplete. */
int session_answer_deallocated(struct session *s, struct evbuffer *in, struct evbuffer *out,
                               const struct msg_header *h);

/* ---- session_relay.c ---- */

/* Relays what the client sent (borrowing a server first when pooled). */
void session_client_to_server(struct session *s);
/* Relays what the database connection sent. */
void session_server_to_client(struct session *s);
/* The pool this session's next transaction runs in (the route may have
 * changed since the last); NULL when out of memory. */
struct pool *session_current_pool(struct session *s);
/* `ps` becomes the session's backend for a transaction. */
void session_attach_server(struct session *s, struct pool_server *ps);

#endif

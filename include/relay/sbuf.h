/* Stream buffers: one socket (plain or TLS) with an input and an output
 * evbuffer, after PgBouncer's sbuf. Reads are persistent; writes go out
 * directly and register for writability only when the kernel pushes back,
 * so relaying a message costs one read and one write, no epoll_ctl.
 *
 * An idle socket costs one struct sbuf and one event: the write event
 * exists only while the kernel pushes back, and the owner releases the
 * buffers when nothing is in flight (sbuf_release_idle) until bytes flow
 * again, as PgBouncer lends an idle socket no buffer.
 *
 * Errors are reported only from event callbacks, never from inside an
 * sbuf_* call, so the owner never sees itself freed mid-function. */
#ifndef PGTANDEM_SBUF_H
#define PGTANDEM_SBUF_H

#include <event2/event.h>
#include <event2/util.h>
#include <openssl/ssl.h>
#include <stddef.h>

#include "compiler.h"

struct sbuf;
struct evbuffer;

struct sbuf_ops {
    void (*on_readable)(struct sbuf *sb, void *ctx);  /* new bytes in sb->in */
    void (*on_drained)(struct sbuf *sb, void *ctx);   /* output fell to the low mark */
    void (*on_ready)(struct sbuf *sb, void *ctx);     /* connect or TLS handshake done */
    void (*on_error)(struct sbuf *sb, void *ctx, int eof, const char *why);
};

enum sbuf_phase { SBUF_CONNECTING, SBUF_OPEN, SBUF_TLS_HANDSHAKE, SBUF_FAILED };

/* The largest TLS record payload the proxy writes: 8 KB, as Postgres
 * writes them. libpq keeps 8 KB free in its input buffer before a read and
 * decrypts what one SSL_read returns there; the rest of a larger record
 * stays inside OpenSSL, where a client that then waits on its socket
 * (psycopg, libpq's async API) never looks, and it hangs with the whole
 * answer already received (test_relay_tls_records.py). */
#define SBUF_TLS_RECORD_PAYLOAD 8192

struct sbuf {
    /* The socket's event (reads, and the calls deferred to the loop) is
     * allocated with the sbuf, right after it: see sbuf.c. */
    struct event *wev;              /* write interest: only while the kernel pushes back (NULL otherwise) */
    /* NULL after sbuf_release_idle until bytes flow again: `in` is there
     * whenever on_readable is called; elsewhere use sbuf_in and sbuf_out */
    struct evbuffer *in, *out;
    SSL *ssl;
    const struct sbuf_ops *ops;
    void *ctx;
    char *error;                    /* why it failed, allocated only then */
    evutil_socket_t fd;
    uint32_t out_low;
    uint32_t read_size;             /* bytes asked of the next read, see sbuf.c */
    uint8_t phase;                  /* enum sbuf_phase */
    uint8_t tls_end;                /* TLS ended after bytes read in the same call: 1 closed, 2 failed */
    unsigned tls_server : 1;        /* handshake as server (client leg) */
    unsigned reading : 1;           /* read interest registered */
    unsigned writing : 1;           /* write interest registered */
    unsigned tls_write_wants_read : 1;
    unsigned notify_drained : 1;    /* the owner waits for on_drained */
    unsigned error_eof : 1;
};

/* Wraps a connected (or connecting, see sbuf_connect) non-blocking socket;
 * the sbuf owns the socket from now on. */
struct sbuf *sbuf_new(struct event_base *base, evutil_socket_t fd, const struct sbuf_ops *ops, void *ctx,
                      size_t out_low);
/* Starts a non-blocking connect; on_ready or on_error follows. */
struct sbuf *sbuf_connect(struct event_base *base, const struct sockaddr *addr, int addrlen,
                          const struct sbuf_ops *ops, void *ctx, size_t out_low);
void sbuf_free(struct sbuf *sb);
void sbuf_set_ops(struct sbuf *sb, const struct sbuf_ops *ops, void *ctx);

/* Begins a TLS handshake on the socket (taking ownership of ssl); on_ready
 * or on_error follows. The input buffer must be empty. */
PGT_MUSTCHECK int sbuf_start_tls(struct sbuf *sb, SSL *ssl, int as_server);

void sbuf_pause_read(struct sbuf *sb);
void sbuf_resume_read(struct sbuf *sb);
/* Sends what it can of sb->out now; the rest follows as the socket allows. */
void sbuf_flush(struct sbuf *sb);
/* Asks for on_drained once the output is at or below its low mark, even
 * when that happens inside the very next sbuf_flush. */
void sbuf_notify_when_drained(struct sbuf *sb);
size_t sbuf_pending_out(const struct sbuf *sb);
/* Bytes read and not yet taken by the owner. */
size_t sbuf_pending_in(const struct sbuf *sb);

/* The owner has nothing in flight on this socket: its buffers, if empty,
 * and its write event, if not pushed back, are freed until bytes flow
 * again. Reading goes on. */
void sbuf_release_idle(struct sbuf *sb);
/* The buffers, allocated again when released. NULL only when out of
 * memory: the sbuf then fails (on_error follows from the loop). */
struct evbuffer *sbuf_in(struct sbuf *sb);
struct evbuffer *sbuf_out(struct sbuf *sb);

#endif

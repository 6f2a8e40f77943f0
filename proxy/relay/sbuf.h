/* Stream buffers: one socket (plain or TLS) with an input and an output
 * evbuffer, after PgBouncer's sbuf. Reads are persistent; writes go out
 * directly and register for writability only when the kernel pushes back,
 * so relaying a message costs one read and one write, no epoll_ctl.
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

struct sbuf {
    struct event_base *base;
    evutil_socket_t fd;
    SSL *ssl;
    int tls_server;                 /* handshake as server (client leg) */
    enum sbuf_phase phase;
    struct event *rev, *wev;
    int reading;                    /* read interest registered */
    int writing;                    /* write interest registered */
    int tls_write_wants_read;
    int notify_drained;             /* the owner waits for on_drained */
    struct evbuffer *in, *out;
    size_t out_low;
    size_t read_size;               /* bytes asked of the next read, see sbuf.c */
    const struct sbuf_ops *ops;
    void *ctx;
    char *error;                    /* why it failed, allocated only then */
    int error_eof;
    int tls_end;                    /* TLS ended after bytes read in the same call: 1 closed, 2 failed */
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

#endif

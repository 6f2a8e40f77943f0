/* Stream buffers (see sbuf.h). The read side reads a bounded chunk
 * per event; the owner pauses reading when it cannot pass the bytes on,
 * which is what bounds memory per connection. */
#include "sbuf.h"

#include <assert.h>
#include <errno.h>
#include <event2/buffer.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Reads start small and double while they fill the space they were given
 * (a result set streaming), then shrink back. Idle sessions then never hold
 * 16 KB chunks, whose holes would fragment the heap between small objects
 * that live as long as their sessions. */
#define READ_MIN 2048
#define READ_MAX 16384
#define TLS_READ_BUDGET (4 * READ_MAX) /* per event, for fairness */

static void on_event(evutil_socket_t fd, short what, void *arg);
static void on_write_event(evutil_socket_t fd, short what, void *arg);
static struct evbuffer *buffer_new(void);
static void buffer_release(struct evbuffer *buf);

/* The socket's event lives right after the sbuf, in the same allocation:
 * libevent tells its size at run time (event_get_struct_event_size), so
 * this does not depend on the layout of libevent's struct, and an sbuf is
 * one malloc, not two. */
#define EV(sb) ((struct event *)((sb) + 1))

/* The flags save an epoll_ctl per message; the event's own pending state
 * is checked too when interest is wanted, so a flag that ever disagrees
 * with libevent (a COPY once stalled with `writing` set and no write event
 * registered) costs one more event_add instead of a connection that never
 * moves again. */
static void fail_later(struct sbuf *sb, int eof, const char *why);

/* A socket the loop cannot watch would never move again: the connection
 * fails (through the owner's error callback), the process goes on. The
 * write event is made the first time the kernel pushes back and kept until
 * the owner releases the idle socket. */
static void want_write(struct sbuf *sb, int on)
{
    if (on && !sb->wev && !(sb->wev = event_new(event_get_base(EV(sb)), sb->fd, EV_WRITE | EV_PERSIST, on_write_event, sb))) {
        sb->writing = 0;
        fail_later(sb, 0, "out of memory");
        return;
    }
    if (on && (!sb->writing || !event_pending(sb->wev, EV_WRITE, NULL)) && event_add(sb->wev, NULL) != 0) {
        sb->writing = 0;
        fail_later(sb, 0, "could not register the socket for writing");
        return;
    }
    if (!on && sb->writing)
        event_del(sb->wev);
    sb->writing = on;
}

static void want_read(struct sbuf *sb, int on)
{
    if (on && (!sb->reading || !event_pending(EV(sb), EV_READ, NULL)) && event_add(EV(sb), NULL) != 0) {
        sb->reading = 0;
        fail_later(sb, 0, "could not register the socket for reading");
        return;
    }
    if (!on && sb->reading)
        event_del(EV(sb));
    sb->reading = on;
}

/* What the write side does next, run from the loop: the socket's own event
 * made active as writable (on_event tells it from a read). */
static void write_side_later(struct sbuf *sb)
{
    event_active(EV(sb), EV_WRITE, 0);
}

/* Records a failure and reports it from the loop, not from the caller. */
static void fail_later(struct sbuf *sb, int eof, const char *why)
{
    if (sb->phase == SBUF_FAILED)
        return;
    sb->phase = SBUF_FAILED;
    sb->error_eof = eof;
    sb->error = strdup(why);
    want_read(sb, 0);
    want_write(sb, 0);
    write_side_later(sb);
}

static void describe_tls_failure(struct sbuf *sb, char *buf, size_t len)
{
    unsigned long e = ERR_get_error();
    long vr = SSL_get_verify_result(sb->ssl);
    if (!sb->tls_server && vr != X509_V_OK)
        snprintf(buf, len, "TLS certificate verification failed: %s", X509_verify_cert_error_string(vr));
    else if (e)
        ERR_error_string_n(e, buf, len);
    else
        snprintf(buf, len, "TLS connection failed");
    ERR_clear_error();
}

/* SSL_get_error needs an empty error queue before each SSL call. It
 * almost always is: a peek is a fraction of ERR_clear_error, which walks
 * all of the queue's slots, and this runs for every record both ways. */
static void clear_tls_errors(void)
{
    if (ERR_peek_error())
        ERR_clear_error();
}

static struct sbuf *sbuf_alloc(struct event_base *base, evutil_socket_t fd, const struct sbuf_ops *ops, void *ctx,
                               size_t out_low)
{
    struct sbuf *sb = calloc(1, sizeof *sb + event_get_struct_event_size());
    if (!sb)
        return NULL;
    if (event_assign(EV(sb), base, fd, EV_READ | EV_PERSIST, on_event, sb) != 0) {
        free(sb); /* nothing else made yet, and sbuf_free needs the event */
        return NULL;
    }
    sb->fd = fd;
    sb->ops = ops;
    sb->ctx = ctx;
    sb->out_low = (uint32_t)out_low;
    sb->read_size = READ_MIN;
    sb->in = buffer_new();
    sb->out = buffer_new();
    if (!sb->in || !sb->out) {
        sb->fd = -1; /* the caller still owns the socket on failure */
        sbuf_free(sb);
        return NULL;
    }
    return sb;
}

struct sbuf *sbuf_new(struct event_base *base, evutil_socket_t fd, const struct sbuf_ops *ops, void *ctx,
                      size_t out_low)
{
    assert(base && ops && fd >= 0);
    struct sbuf *sb = sbuf_alloc(base, fd, ops, ctx, out_low);
    if (!sb)
        return NULL;
    sb->phase = SBUF_OPEN;
    evutil_make_socket_nonblocking(fd);
    want_read(sb, 1);
    return sb;
}

struct sbuf *sbuf_connect(struct event_base *base, const struct sockaddr *addr, int addrlen,
                          const struct sbuf_ops *ops, void *ctx, size_t out_low)
{
    assert(base && addr && ops && addrlen > 0);
    evutil_socket_t fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    struct sbuf *sb = sbuf_alloc(base, fd, ops, ctx, out_low);
    if (!sb) {
        close(fd);
        return NULL;
    }
    sb->phase = SBUF_CONNECTING;
    if (connect(fd, addr, (socklen_t)addrlen) != 0 && errno != EINPROGRESS) {
        fail_later(sb, 0, strerror(errno));
        return sb;
    }
    want_write(sb, 1); /* writability tells the connect finished */
    return sb;
}

void sbuf_free(struct sbuf *sb)
{
    if (!sb)
        return;
    event_del(EV(sb));
    if (sb->wev)
        event_free(sb->wev);
    if (sb->ssl) {
        if (sb->phase == SBUF_OPEN)
            SSL_shutdown(sb->ssl); /* best effort close_notify; never waits */
        SSL_free(sb->ssl);
    }
    if (sb->fd >= 0) {
        /* Unread input makes close() send a reset, which can destroy the
         * ErrorResponse just written: read what is there first. */
        char sink[4096];
        for (int budget = 64; budget > 0 && read(sb->fd, sink, sizeof sink) > 0; budget--)
            ;
        close(sb->fd);
    }
    if (sb->in)
        buffer_release(sb->in);
    if (sb->out)
        buffer_release(sb->out);
    free(sb->error);
    free(sb);
}

void sbuf_set_ops(struct sbuf *sb, const struct sbuf_ops *ops, void *ctx)
{
    assert(sb && ops);
    sb->ops = ops;
    sb->ctx = ctx;
}

size_t sbuf_pending_out(const struct sbuf *sb)
{
    assert(sb);
    return sb->out ? evbuffer_get_length(sb->out) : 0;
}

size_t sbuf_pending_in(const struct sbuf *sb)
{
    assert(sb);
    return sb->in ? evbuffer_get_length(sb->in) : 0;
}

/* Empty buffers released by idle sockets, kept for the next socket that
 * needs one: a session in session mode releases its four at every
 * transaction's end and makes them again with the next, and an
 * evbuffer_new and evbuffer_free each time were a tenth of the relay's
 * own instructions per transaction. Bounded, so idle sessions still hold
 * no buffer: a few hundred bytes each, whatever the number of sessions.
 * One event loop: one cache. */
#define SPARE_BUFFERS 64
static struct evbuffer *spare[SPARE_BUFFERS];
static int nspare;

static struct evbuffer *buffer_new(void)
{
    return nspare ? spare[--nspare] : evbuffer_new();
}

/* Only an empty buffer is kept (no chains: a drained evbuffer frees them). */
static void buffer_release(struct evbuffer *buf)
{
    if (nspare < SPARE_BUFFERS && evbuffer_get_length(buf) == 0)
        spare[nspare++] = buf;
    else
        evbuffer_free(buf);
}

/* A released buffer made again; NULL (and the sbuf failed) out of memory. */
static struct evbuffer *ensure(struct sbuf *sb, struct evbuffer **buf)
{
    if (!*buf && !(*buf = buffer_new()))
        fail_later(sb, 0, "out of memory");
    return *buf;
}

struct evbuffer *sbuf_in(struct sbuf *sb)
{
    assert(sb);
    return ensure(sb, &sb->in);
}

struct evbuffer *sbuf_out(struct sbuf *sb)
{
    assert(sb);
    return ensure(sb, &sb->out);
}

void sbuf_release_idle(struct sbuf *sb)
{
    assert(sb);
    if (sb->phase != SBUF_OPEN || sb->writing || sb->notify_drained)
        return;
    if (sb->in && evbuffer_get_length(sb->in) == 0) {
        buffer_release(sb->in);
        sb->in = NULL;
    }
    if (sb->out && evbuffer_get_length(sb->out) == 0) {
        buffer_release(sb->out);
        sb->out = NULL;
    }
    if (sb->wev) {
        event_free(sb->wev);
        sb->wev = NULL;
    }
}

void sbuf_pause_read(struct sbuf *sb)
{
    assert(sb);
    if (sb->phase == SBUF_OPEN)
        want_read(sb, 0);
}

void sbuf_resume_read(struct sbuf *sb)
{
    assert(sb);
    if (sb->phase != SBUF_OPEN)
        return;
    want_read(sb, 1);
    /* OpenSSL may hold decrypted bytes the socket will not signal again. */
    if (sb->ssl && (SSL_has_pending(sb->ssl) || sb->tls_end))
        event_active(EV(sb), EV_READ, 0);
}

static void continue_handshake(struct sbuf *sb)
{
    ERR_clear_error();
    int rc = sb->tls_server ? SSL_accept(sb->ssl) : SSL_connect(sb->ssl);
    if (rc == 1) {
        sb->phase = SBUF_OPEN;
        want_write(sb, sbuf_pending_out(sb) > 0);
        want_read(sb, 1);
        /* Read-ahead may have pulled the first application bytes in with
         * the handshake: the socket will not signal them again. */
        if (SSL_has_pending(sb->ssl))
            event_active(EV(sb), EV_READ, 0);
        sb->ops->on_ready(sb, sb->ctx);
        return;
    }
    int err = SSL_get_error(sb->ssl, rc);
    if (err == SSL_ERROR_WANT_READ) {
        want_write(sb, 0);
        want_read(sb, 1);
    } else if (err == SSL_ERROR_WANT_WRITE) {
        want_write(sb, 1);
    } else {
        char why[200];
        describe_tls_failure(sb, why, sizeof why);
        fail_later(sb, 0, why);
    }
}

int sbuf_start_tls(struct sbuf *sb, SSL *ssl, int as_server)
{
    assert(sb && ssl);
    if (sbuf_pending_in(sb) > 0 || sb->phase != SBUF_OPEN) {
        SSL_free(ssl);
        return -1;
    }
    sb->ssl = ssl;
    sb->tls_server = as_server;
    SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (SSL_set_fd(ssl, (int)sb->fd) != 1)
        return -1;
    sb->phase = SBUF_TLS_HANDSHAKE;
    want_read(sb, 1);
    /* First step from the loop so on_ready never runs inside this call. */
    event_active(EV(sb), EV_READ, 0);
    return 0;
}

static void adapt_read_size(struct sbuf *sb, size_t got)
{
    if (got >= sb->read_size && sb->read_size < READ_MAX)
        sb->read_size *= 2;
    else if (got < sb->read_size / 4 && sb->read_size > READ_MIN)
        sb->read_size /= 2;
}

/* Reads one chunk (plain) or up to a budget (TLS). Returns bytes read,
 * 0 on EOF, -1 on error, -2 when nothing was available. */
static ssize_t read_plain(struct sbuf *sb)
{
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(sb->in, sb->read_size, &v, 1) < 1)
        return -1;
    ssize_t n = read(sb->fd, v.iov_base, sb->read_size);
    if (n > 0) {
        v.iov_len = (size_t)n;
        evbuffer_commit_space(sb->in, &v, 1);
        adapt_read_size(sb, (size_t)n);
        return n;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return -2;
    return n;
}

/* An SSL_read that returns the last bytes and then meets close_notify (or
 * an error) in the same call: the bytes go up now, the end on the next
 * turn. A peer that keeps TCP open for our close_notify sends nothing more,
 * so the socket would never signal it again. */
static ssize_t end_tls_after(struct sbuf *sb, ssize_t total, int closed)
{
    if (!total)
        return closed ? 0 : -1;
    sb->tls_end = closed ? 1 : 2;
    if (sb->reading)
        event_active(EV(sb), EV_READ, 0);
    return total;
}

static ssize_t read_tls(struct sbuf *sb)
{
    ssize_t total = 0;
    if (sb->tls_end)
        return sb->tls_end == 1 ? 0 : -1;
    while (total < TLS_READ_BUDGET) {
        struct evbuffer_iovec v;
        if (evbuffer_reserve_space(sb->in, sb->read_size, &v, 1) < 1)
            return -1;
        clear_tls_errors();
        int n = SSL_read(sb->ssl, v.iov_base, (int)sb->read_size);
        if (n > 0) {
            v.iov_len = (size_t)n;
            evbuffer_commit_space(sb->in, &v, 1);
            adapt_read_size(sb, (size_t)n);
            total += n;
            /* With read-ahead, nothing buffered means the socket is empty:
             * skip the read() that would only say EAGAIN. */
            if (!SSL_has_pending(sb->ssl))
                return total;
            continue;
        }
        int err = SSL_get_error(sb->ssl, n);
        if (err == SSL_ERROR_WANT_READ)
            return total ? total : -2;
        if (err == SSL_ERROR_WANT_WRITE) {
            want_write(sb, 1);
            return total ? total : -2;
        }
        /* close_notify or a plain close, or a failure */
        return end_tls_after(sb, total, err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0));
    }
    if (SSL_has_pending(sb->ssl))
        event_active(EV(sb), EV_READ, 0); /* more buffered bytes: next turn */
    return total;
}

static void on_read(struct sbuf *sb)
{
    if (sb->phase == SBUF_TLS_HANDSHAKE) {
        continue_handshake(sb);
        return;
    }
    if (sb->phase != SBUF_OPEN)
        return;
    if (sb->tls_write_wants_read) {
        sb->tls_write_wants_read = 0;
        sbuf_flush(sb);
    }
    if (!sb->reading || !sbuf_in(sb))
        return;
    ssize_t n = sb->ssl ? read_tls(sb) : read_plain(sb);
    if (n > 0)
        sb->ops->on_readable(sb, sb->ctx);
    else if (n == 0)
        fail_later(sb, 1, "connection closed");
    else if (n == -1)
        fail_later(sb, 0, sb->ssl ? "TLS read failed" : strerror(errno));
}

/* Postgres hands its whole output to one SSL_write; a client that reads one
 * record at a time (libpq) then finds everything one commit sent (several
 * NotificationResponses) in one read. Segments of the output buffer are
 * however long the relay made them, so small ones are gathered here up to
 * a record's payload before they are encrypted; a larger write OpenSSL
 * cuts into records of that payload (tls.c sets it as the contexts' send
 * fragment). One event loop: one buffer. */
#define TLS_RECORD_PAYLOAD SBUF_TLS_RECORD_PAYLOAD
static unsigned char tls_gather[TLS_RECORD_PAYLOAD];

/* The next bytes to hand to SSL_write: the first segment in place when it
 * fills a record or is all there is, else a copy of up to a record's worth.
 * A retry after WANT_WRITE sees the same bytes again, at least as many:
 * the buffer only grows at its end (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
 * allows the new address). */
static const void *next_tls_chunk(struct sbuf *sb, size_t *len)
{
    size_t pending = evbuffer_get_length(sb->out);
    struct evbuffer_iovec v;
    evbuffer_peek(sb->out, -1, NULL, &v, 1);
    if (v.iov_len >= TLS_RECORD_PAYLOAD || v.iov_len == pending) {
        *len = v.iov_len > 4 * TLS_RECORD_PAYLOAD ? 4 * TLS_RECORD_PAYLOAD : v.iov_len;
        return v.iov_base;
    }
    *len = pending < TLS_RECORD_PAYLOAD ? pending : TLS_RECORD_PAYLOAD;
    evbuffer_copyout(sb->out, tls_gather, *len);
    return tls_gather;
}

static int write_tls(struct sbuf *sb)
{
    while (sbuf_pending_out(sb) > 0) {
        size_t len;
        const void *chunk = next_tls_chunk(sb, &len);
        clear_tls_errors();
        int n = SSL_write(sb->ssl, chunk, (int)len);
        if (n > 0) {
            evbuffer_drain(sb->out, (size_t)n);
            continue;
        }
        int err = SSL_get_error(sb->ssl, n);
        if (err == SSL_ERROR_WANT_WRITE)
            return 1;
        if (err == SSL_ERROR_WANT_READ) {
            sb->tls_write_wants_read = 1;
            return 0;
        }
        return -1;
    }
    return 0;
}

void sbuf_flush(struct sbuf *sb)
{
    assert(sb);
    if (sb->phase != SBUF_OPEN)
        return; /* connect / handshake still going: written once open */
    int blocked = 0;
    if (sb->ssl) {
        int rc = write_tls(sb);
        if (rc < 0) {
            fail_later(sb, 0, "TLS write failed");
            return;
        }
        blocked = rc == 1;
    } else {
        while (sbuf_pending_out(sb) > 0) {
            int n = evbuffer_write(sb->out, sb->fd);
            if (n > 0)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
                blocked = 1;
                break;
            }
            fail_later(sb, n == 0, n == 0 ? "connection closed" : strerror(errno));
            return;
        }
    }
    want_write(sb, blocked);
    /* Drained without the socket ever pushing back: no write event will
     * come, so report it from the loop's next turn. */
    if (!blocked && sb->notify_drained && sbuf_pending_out(sb) <= sb->out_low)
        write_side_later(sb);
}

void sbuf_notify_when_drained(struct sbuf *sb)
{
    assert(sb);
    sb->notify_drained = 1;
}

static void finish_connect(struct sbuf *sb)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(sb->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err) {
        fail_later(sb, 0, strerror(err));
        return;
    }
    sb->phase = SBUF_OPEN;
    want_write(sb, 0);
    want_read(sb, 1);
    sb->ops->on_ready(sb, sb->ctx);
}

static void on_write(struct sbuf *sb)
{
    switch (sb->phase) {
    case SBUF_FAILED:
        want_write(sb, 0);
        sb->ops->on_error(sb, sb->ctx, sb->error_eof, sb->error ? sb->error : "out of memory");
        return;
    case SBUF_CONNECTING:
        finish_connect(sb);
        return;
    case SBUF_TLS_HANDSHAKE:
        continue_handshake(sb);
        return;
    case SBUF_OPEN:
        sbuf_flush(sb);
        if (sb->phase == SBUF_OPEN && sbuf_pending_out(sb) <= sb->out_low) {
            sb->notify_drained = 0;
            sb->ops->on_drained(sb, sb->ctx);
        }
        return;
    }
}

static void on_write_event(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    on_write(arg);
}

/* The socket's event: readable, or made active as writable for what the
 * write side does next (write_side_later). Both at once: the write side
 * first, and the read once more from the loop, since the owner may free
 * the sbuf from a write-side callback (which drops that activation too). */
static void on_event(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    struct sbuf *sb = arg;
    if (!(what & EV_WRITE)) {
        on_read(sb);
        return;
    }
    if (what & EV_READ)
        event_active(EV(sb), EV_READ, 0);
    on_write(sb);
}

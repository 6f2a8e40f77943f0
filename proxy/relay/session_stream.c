/* One direction of a ready session's traffic at the byte level (see
 * session_internal.h: struct relay_dir): the rest of the message being
 * passed moved on, the next message's header read where it starts, the
 * other side's room kept, and, from the server, whole messages that only
 * stream held back and moved on together. What a message means is
 * session_relay.c's. */
#include "session.h"

#include <event2/buffer.h>
#include <string.h>

#include "proto.h"
#include "relay.h"
#include "sbuf.h"
#include "session_internal.h"

/* Moves up to `want` bytes of the current message; returns bytes moved. */
static size_t pass_bytes(struct evbuffer *in, struct evbuffer *out, uint32_t *remaining)
{
    size_t avail = evbuffer_get_length(in);
    size_t n = avail < *remaining ? avail : *remaining;
    if (n == 0)
        return 0;
    int moved = evbuffer_remove_buffer(in, out, n);
    if (moved <= 0)
        return 0;
    *remaining -= (uint32_t)moved;
    return (size_t)moved;
}

/* Moves the held messages to `out`, in order, before whatever comes next. */
void session_pass_held(struct relay_dir *d)
{
    if (!d->held)
        return;
    int moved = evbuffer_remove_buffer(d->from->in, d->out, d->held);
    if (moved > 0) {
        *d->bytes += (size_t)moved;
        *d->metric += (size_t)moved;
    }
    d->held = 0;
}

/* `want` bytes of `in` from `off` (they are there): from the first chain
 * in place when it holds them, which is the usual case. */
static void copy_from(struct evbuffer *in, size_t off, uint8_t *dst, size_t want)
{
    struct evbuffer_iovec v;
    if (evbuffer_peek(in, (ev_ssize_t)(off + want), NULL, &v, 1) >= 1 && v.iov_len >= off + want) {
        memcpy(dst, (const uint8_t *)v.iov_base + off, want);
        return;
    }
    struct evbuffer_ptr at;
    evbuffer_ptr_set(in, &at, off, EVBUFFER_PTR_SET);
    evbuffer_copyout_from(in, &at, dst, want);
}

/* Passes the rest of the current message, then looks at the next header
 * (*h filled for NEXT_MESSAGE; *avail: the bytes there are from its start,
 * held bytes before it not counted). */
enum next_result session_next_message(struct session *s, struct relay_dir *d, struct msg_header *h, size_t *avail)
{
    struct evbuffer *in = d->from->in, *out = sbuf_out(d->to);
    if (!in || !out) /* nothing read since the buffers were released; or out of memory, and `to` fails */
        return NEXT_WAIT;
    d->out = out;
    if (*d->remaining && d->discard && *d->discard) {
        session_pass_held(d); /* what is dropped comes after what passes */
        size_t n = evbuffer_get_length(in) < *d->remaining ? evbuffer_get_length(in) : *d->remaining;
        evbuffer_drain(in, n);
        *d->remaining -= (uint32_t)n;
        if (*d->remaining)
            return NEXT_WAIT;
        *d->discard = 0;
    } else if (*d->remaining && d->batch) {
        size_t left = evbuffer_get_length(in) - d->held;
        size_t n = left < *d->remaining ? left : *d->remaining;
        d->held += n;
        *d->remaining -= (uint32_t)n;
        if (*d->remaining)
            return NEXT_WAIT;
    } else if (*d->remaining) {
        size_t n = pass_bytes(in, out, d->remaining);
        *d->bytes += n;
        *d->metric += n;
        if (*d->remaining)
            return NEXT_WAIT;
    }
    if (sbuf_pending_out(d->to) + d->held >= s->relay->cfg.buffer_bytes) {
        session_pass_held(d);
        *d->blocked = 1;
        sbuf_pause_read(d->from);
        sbuf_notify_when_drained(d->to);
        return NEXT_WAIT;
    }
    *avail = evbuffer_get_length(in) - d->held;
    if (*avail < PROTO_HEADER_LEN)
        return NEXT_WAIT;
    copy_from(in, d->held, d->head, *avail > PROTO_HEADER_LEN ? PROTO_HEADER_LEN + 1 : PROTO_HEADER_LEN);
    return proto_read_header(d->head, *avail, d->max_length, h) == HEADER_OK ? NEXT_MESSAGE : NEXT_BAD_LENGTH;
}

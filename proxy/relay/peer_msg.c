/* Message channels between the proxies of a fleet (see peer_msg.h). One
 * channel is one TCP connection to or from another proxy's peer listener;
 * each owns its stream buffer and timer and is freed by its own callbacks,
 * by peer_msg_close, or at shutdown. The handler is told of every message
 * and of a channel that failed; a channel closed on purpose goes quietly. */
#include "peer_msg.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "proto.h"
#include "sbuf.h"
#include "source_limit.h"

/* Both bounds only matter against connections that are not a fleet's:
 * a member's channel lives for one hold and carries three messages. */
#define MAX_CHANNELS_IN 256
#define MAX_CHANNELS_OUT 256
/* An accepted channel (or one we opened) idle this long is closed; a
 * channel that has not yet sent a message the fleet accepted gets the
 * login timeout, as any connection to the peer port. */
#define CHANNEL_IDLE_MS 60000
/* A closing channel whose output the other side does not read. */
#define CLOSE_LINGER_MS 1000

struct peer_channel {
    struct peer_channel *prev, *next;
    struct relay *relay;
    struct sbuf *sb;
    struct event *timer;
    uint64_t id;
    int outgoing;         /* we opened it */
    int connected;        /* outgoing: the connection is up */
    int accepted;         /* incoming: the handler took a message from it */
    int closing;          /* closed on purpose: goes once its output is written */
    int stranger;         /* incoming: from no known proxy's host */
    char addr[136];       /* the other end, for the log */
};

static void channel_free(struct peer_channel *ch)
{
    struct fleet_peers *f = &ch->relay->fleet;
    sbuf_free(ch->sb);
    if (ch->timer)
        event_free(ch->timer);
    if (ch->prev)
        ch->prev->next = ch->next;
    else
        f->channels = ch->next;
    if (ch->next)
        ch->next->prev = ch->prev;
    if (ch->outgoing)
        f->nchannels_out--;
    else
        f->nchannels_in--;
    free(ch);
}

static struct peer_channel *find_channel(const struct relay *relay, uint64_t id)
{
    for (struct peer_channel *ch = relay->fleet.channels; ch; ch = ch->next)
        if (ch->id == id)
            return ch;
    return NULL;
}

/* Freed first, then the handler told: it may open or close channels. */
static void channel_failed(struct peer_channel *ch, const char *why)
{
    struct relay *relay = ch->relay;
    uint64_t id = ch->id;
    int tell = !ch->closing && (ch->outgoing || ch->accepted);
    log_debug("peer channel %llu %s %s: %s", (unsigned long long)id, ch->outgoing ? "to" : "from", ch->addr, why);
    channel_free(ch);
    if (tell && relay->fleet.on_message)
        relay->fleet.on_message(relay->fleet.on_message_ctx, id, NULL);
}

static void restart_timer(struct peer_channel *ch, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    if (evtimer_add(ch->timer, &tv) != 0) { /* ends now rather than never */
        log_error("peer channel %s: could not set its timer; closing", ch->addr);
        event_active(ch->timer, EV_TIMEOUT, 0);
    }
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct peer_channel *ch = arg;
    if (ch->closing) {
        channel_free(ch);
        return;
    }
    if (!ch->outgoing && !ch->accepted)
        log_info("peer connection from %s: no message in time; closing", ch->addr);
    channel_failed(ch, "idle or not connected in time");
}

int peer_msg_length_ok(uint32_t length)
{
    return length >= PEER_MSG_HEADER + 1 && length <= PEER_MSG_HEADER + PEER_MSG_MAX;
}

/* Whole messages are handed up one at a time; the handler may close this
 * channel (or any other), so it is looked up again after each. */
static void channel_readable(struct sbuf *sb, void *arg)
{
    struct peer_channel *ch = arg;
    struct relay *relay = ch->relay;
    uint64_t id = ch->id;
    while (evbuffer_get_length(sb->in) >= PEER_MSG_HEADER) {
        uint8_t head[PEER_MSG_HEADER];
        evbuffer_copyout(sb->in, head, sizeof head);
        uint32_t length = proto_get_u32(head), code = proto_get_u32(head + 4);
        if (code != PEER_MSG_CODE || !peer_msg_length_ok(length)) {
            if (!ch->outgoing)
                source_limit_failure(relay, ch->addr, SOURCE_BAD_PEER_MESSAGE, ch->stranger,
                                     "peer connection from %s: not a message frame; closing", ch->addr);
            channel_failed(ch, "not a message frame");
            return;
        }
        if (evbuffer_get_length(sb->in) < length)
            return;
        char text[PEER_MSG_MAX + 1];
        evbuffer_drain(sb->in, PEER_MSG_HEADER);
        size_t n = length - PEER_MSG_HEADER;
        evbuffer_remove(sb->in, text, n);
        text[n] = '\0';
        if (ch->closing) /* after a close nothing counts */
            continue;
        if (strlen(text) != n) { /* a NUL inside: not text */
            if (!ch->outgoing)
                source_limit_failure(relay, ch->addr, SOURCE_BAD_PEER_MESSAGE, ch->stranger,
                                     "peer message from %s is not text; closing", ch->addr);
            channel_failed(ch, "not text");
            return;
        }
        int ok = relay->fleet.on_message ? relay->fleet.on_message(relay->fleet.on_message_ctx, id, text) : 0;
        ch = find_channel(relay, id);
        if (!ch)
            return;
        if (ch->outgoing)
            continue;
        if (!ok) {
            source_limit_failure(relay, ch->addr, SOURCE_BAD_PEER_MESSAGE, ch->stranger,
                                 "peer message from %s refused; closing", ch->addr);
            channel_free(ch);
            return;
        }
        ch->accepted = 1;
        restart_timer(ch, CHANNEL_IDLE_MS);
    }
}

static void channel_drained(struct sbuf *sb, void *arg)
{
    (void)sb;
    struct peer_channel *ch = arg;
    if (ch->closing)
        channel_free(ch);
}

static void channel_ready(struct sbuf *sb, void *arg)
{
    struct peer_channel *ch = arg;
    ch->connected = 1;
    if (ch->closing)
        sbuf_notify_when_drained(sb);
    sbuf_flush(sb);
}

static void channel_error(struct sbuf *sb, void *arg, int eof, const char *why)
{
    (void)sb;
    struct peer_channel *ch = arg;
    channel_failed(ch, eof ? "closed by the other side" : why);
}

static const struct sbuf_ops channel_ops = {channel_readable, channel_drained, channel_ready, channel_error};

/* Three small messages per hold, each awaited by the other side. */
static void no_delay(evutil_socket_t fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static struct peer_channel *channel_new(struct relay *relay, struct sbuf *sb, int outgoing, const char *addr,
                                        int timeout_ms)
{
    struct peer_channel *ch = sb ? calloc(1, sizeof *ch) : NULL;
    struct event *timer = ch ? evtimer_new(relay->base, timer_cb, ch) : NULL;
    if (!timer) {
        sbuf_free(sb);
        free(ch);
        return NULL;
    }
    struct fleet_peers *f = &relay->fleet;
    ch->relay = relay;
    ch->sb = sb;
    ch->timer = timer;
    ch->outgoing = outgoing;
    ch->id = ++f->next_channel_id;
    snprintf(ch->addr, sizeof ch->addr, "%s", addr);
    ch->next = f->channels;
    if (f->channels)
        f->channels->prev = ch;
    f->channels = ch;
    if (outgoing)
        f->nchannels_out++;
    else
        f->nchannels_in++;
    sbuf_set_ops(sb, &channel_ops, ch);
    no_delay(sb->fd);
    restart_timer(ch, timeout_ms);
    return ch;
}

int peer_msg_adopt(struct relay *relay, struct sbuf *sb, const char *from, int stranger)
{
    if (stranger && !source_limit_allows(relay, from)) {
        sbuf_free(sb);
        return -1;
    }
    if (relay->fleet.nchannels_in >= MAX_CHANNELS_IN) {
        log_warn("peer connection from %s refused: %d message channels already open", from, MAX_CHANNELS_IN);
        sbuf_free(sb);
        return -1;
    }
    int ms = relay->cfg.client_login_timeout_ms > 0 ? relay->cfg.client_login_timeout_ms : CHANNEL_IDLE_MS;
    struct peer_channel *ch = channel_new(relay, sb, 0, from, ms);
    if (!ch) {
        log_error("out of memory taking a peer message channel");
        return -1;
    }
    ch->stranger = stranger;
    channel_readable(sb, ch);
    return 0;
}

void peer_msg_set_handler(struct relay *relay, relay_peer_msg_fn fn, void *ctx)
{
    relay->fleet.on_message = fn;
    relay->fleet.on_message_ctx = ctx;
}

uint64_t peer_msg_open(struct relay *relay, const char *address)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    int len = (int)sizeof ss;
    if (evutil_parse_sockaddr_port(address, (struct sockaddr *)&ss, &len) != 0) {
        log_warn("peer channel to '%s' not opened: needs a numeric HOST:PORT", address);
        return 0;
    }
    if (relay->fleet.nchannels_out >= MAX_CHANNELS_OUT) {
        log_warn("peer channel to %s not opened: %d already open", address, MAX_CHANNELS_OUT);
        return 0;
    }
    struct sbuf *sb = sbuf_connect(relay->base, (const struct sockaddr *)&ss, len, &channel_ops, NULL, 0);
    struct peer_channel *ch = channel_new(relay, sb, 1, address, CHANNEL_IDLE_MS);
    if (!ch) {
        log_warn("peer channel to %s not opened: %s", address, sb ? "out of memory" : "cannot connect");
        return 0;
    }
    return ch->id;
}

int peer_msg_send(struct relay *relay, uint64_t channel, const char *msg)
{
    struct peer_channel *ch = find_channel(relay, channel);
    size_t n = strlen(msg);
    if (!ch || ch->closing || n == 0 || n > PEER_MSG_MAX)
        return -1;
    uint8_t head[PEER_MSG_HEADER];
    proto_put_u32(head, (uint32_t)(PEER_MSG_HEADER + n));
    proto_put_u32(head + 4, PEER_MSG_CODE);
    if (evbuffer_add(ch->sb->out, head, sizeof head) != 0 || evbuffer_add(ch->sb->out, msg, n) != 0)
        return -1;
    if (!ch->outgoing || ch->connected)
        sbuf_flush(ch->sb);
    return 0;
}

void peer_msg_close(struct relay *relay, uint64_t channel)
{
    struct peer_channel *ch = find_channel(relay, channel);
    if (!ch || ch->closing)
        return;
    if (sbuf_pending_out(ch->sb) == 0) {
        channel_free(ch);
        return;
    }
    ch->closing = 1;
    restart_timer(ch, CLOSE_LINGER_MS);
    if (!ch->outgoing || ch->connected) {
        sbuf_notify_when_drained(ch->sb);
        sbuf_flush(ch->sb);
    }
}

void peer_msg_free_all(struct relay *relay)
{
    for (struct peer_channel *ch = relay->fleet.channels, *next; ch; ch = next) {
        next = ch->next;
        channel_free(ch);
    }
}

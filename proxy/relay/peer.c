/* CancelRequests between the proxies of a fleet (see peer.h).
 * Several proxies in front of one database: a client's CancelRequest comes
 * on a new connection, which a shared port or a load balancer may hand to
 * another proxy than the one holding the session. Cancel keys carry the
 * issuing proxy's slot, so that proxy sends the 16 bytes on to the owner's
 * peer listener. The listener takes exactly one CancelRequest per
 * connection and handles it locally only: a request is forwarded at most
 * once, whatever the proxies believe about each other's slots.
 *
 * As with Postgres, closing the connection is the answer: the listener
 * closes once Postgres has closed the connection that carried the request
 * on (so the backend has been signalled), and the forwarding proxy waits
 * for that close before it closes its client's connection.
 *
 * A connection that begins with a message header instead is handed to
 * peer_msg.c: the fleet's messages (the cutover's hold) travel there. */
#include "peer.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "peer_msg.h"
#include "proto.h"
#include "relay_peer.h"
#include "sbuf.h"
#include "source_limit.h"

#define PEER_BACKLOG 128
#define CANCEL_LEN 16
/* Peers send their 16 bytes at once, so these bounds only matter against
 * connections that never do; beyond them new ones are refused. */
#define MAX_INCOMING 256
#define MAX_FORWARDS 256
/* The login timeout bounds an incoming connection; with that off (0),
 * this does, so idle connections cannot use up MAX_INCOMING for good. */
#define INCOMING_TIMEOUT_MS 60000

/* One connection of the peer listener, or one forward in flight; it owns
 * its stream buffer and timer and is freed by its own callbacks (or by
 * peer_free at shutdown). */
struct peer_conn {
    struct peer_conn *prev, *next;
    struct relay *relay;
    struct sbuf *sb;
    struct event *timer;
    int forward;          /* 1: ours, on its way to a peer; 0: a peer's, being read */
    int slot;             /* forward: the peer's slot */
    int delivered;        /* forward: the 16 bytes are out; waiting for the peer to close */
    int waiting;          /* incoming: the request went upstream; waiting for Postgres to close */
    uint64_t id;          /* incoming: names it to the cancel's done callback */
    cancel_done_fn done;  /* forward: whom to tell once the peer closed */
    uint64_t waiter;
    struct sockaddr_storage from; /* incoming: who connected */
    char addr[136];       /* the other end, for the log */
};

/* "host:port", with IPv6 hosts in brackets as evutil_parse_sockaddr_port
 * reads them back. */
static void format_sockaddr(const struct sockaddr *sa, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
    }
    snprintf(out, outlen, sa->sa_family == AF_INET6 ? "[%s]:%d" : "%s:%d", host, port);
}

static void conn_free(struct peer_conn *pc)
{
    struct fleet_peers *f = &pc->relay->fleet;
    sbuf_free(pc->sb);
    if (pc->timer)
        event_free(pc->timer);
    if (pc->prev)
        pc->prev->next = pc->next;
    else
        f->conns = pc->next;
    if (pc->next)
        pc->next->prev = pc->prev;
    if (pc->forward)
        f->nforwards--;
    else
        f->nincoming--;
    free(pc);
}

/* A forward is over (answered, failed or timed out): tell who waits. */
static void forward_finish(struct peer_conn *pc)
{
    struct relay *relay = pc->relay;
    cancel_done_fn done = pc->done;
    uint64_t waiter = pc->waiter;
    conn_free(pc);
    if (done)
        done(relay, waiter);
}

static void conn_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct peer_conn *pc = arg;
    int ms = pc->relay->cfg.cancel_wait_timeout_ms;
    if (pc->forward && pc->delivered)
        log_info("cancel request to proxy slot %d at %s: no answer within %d ms; closing", pc->slot, pc->addr, ms);
    else if (pc->forward)
        log_warn("cancel request to proxy slot %d at %s not delivered: no connection within %d ms", pc->slot,
                 pc->addr, ms);
    else if (pc->waiting)
        log_info("cancel request from peer %s: the upstream did not answer within %d ms; closing", pc->addr, ms);
    else
        log_info("peer connection from %s: no CancelRequest in time; closing", pc->addr);
    if (pc->forward)
        forward_finish(pc);
    else
        conn_free(pc);
}

static void restart_timer(struct peer_conn *pc, int timeout_ms)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    if (evtimer_add(pc->timer, &tv) != 0) { /* ends now rather than never */
        log_error("peer connection %s: could not set its timer; closing", pc->addr);
        event_active(pc->timer, EV_TIMEOUT, 0);
    }
}

/* Takes ownership of sb (NULL: out of memory or descriptors). */
static struct peer_conn *conn_new(struct relay *relay, struct sbuf *sb, int forward, int timeout_ms)
{
    struct peer_conn *pc = sb ? calloc(1, sizeof *pc) : NULL;
    struct event *timer = pc ? evtimer_new(relay->base, conn_timeout_cb, pc) : NULL;
    if (!timer) {
        sbuf_free(sb);
        free(pc);
        return NULL;
    }
    pc->relay = relay;
    pc->sb = sb;
    pc->timer = timer;
    pc->forward = forward;
    restart_timer(pc, timeout_ms);
    struct fleet_peers *f = &relay->fleet;
    pc->id = ++f->next_conn_id;
    pc->next = f->conns;
    if (f->conns)
        f->conns->prev = pc;
    f->conns = pc;
    if (forward)
        f->nforwards++;
    else
        f->nincoming++;
    sbuf_set_ops(sb, sb->ops, pc);
    return pc;
}

/* ---- the listener: one CancelRequest per connection, handled here ---- */

/* Whether the first n bytes (n <= 16) can begin a CancelRequest. */
static int cancel_prefix_ok(const uint8_t *bytes, size_t n)
{
    uint8_t head[8];
    proto_put_u32(head, CANCEL_LEN);
    proto_put_u32(head + 4, PROTO_CANCEL_CODE);
    return memcmp(bytes, head, n < sizeof head ? n : sizeof head) == 0;
}

/* Postgres closed the connection that carried the request on: so does
 * the listener, which is the forwarding proxy's answer. */
static void incoming_answered(struct relay *relay, uint64_t waiter)
{
    for (struct peer_conn *pc = relay->fleet.conns; pc; pc = pc->next) {
        if (!pc->forward && pc->id == waiter && pc->waiting) {
            log_debug("cancel request from peer %s answered", pc->addr);
            conn_free(pc);
            return;
        }
    }
}

static int same_host(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)a)->sin_addr, &((const struct sockaddr_in *)b)->sin_addr,
                      sizeof(struct in_addr)) == 0;
    if (a->ss_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr, &((const struct sockaddr_in6 *)b)->sin6_addr,
                      sizeof(struct in6_addr)) == 0;
    return 0;
}

/* Whether the connection comes from the host of another proxy of the
 * fleet, which has charged the request to its own client's source. */
static int from_fleet_peer(const struct peer_conn *pc)
{
    const struct fleet_peers *f = &pc->relay->fleet;
    for (size_t i = 0; i < f->npeers; i++)
        if (same_host(&pc->from, &f->peers[i].addr))
            return 1;
    return 0;
}

/* A whole CancelRequest: handled here (never forwarded again). The peer
 * port is as open as the client port, so a stranger's requests are
 * limited the same way; a fleet peer's are not, or clients forging keys
 * through that peer from many addresses would use up its budget here and
 * have its genuine forwards refused. */
static void handle_request(struct peer_conn *pc, const uint8_t *req)
{
    struct relay *relay = pc->relay;
    int stranger = !from_fleet_peer(pc);
    if (stranger && !source_limit_allows(relay, pc->addr)) {
        conn_free(pc);
        return;
    }
    uint32_t pid = proto_get_u32(req + 8), key = proto_get_u32(req + 12);
    enum cancel_result r = relay->fleet.cancel_here
                               ? relay->fleet.cancel_here(relay, pid, key, incoming_answered, pc->id)
                               : CANCEL_NO_MATCH;
    if (r == CANCEL_SENT) {
        log_debug("cancel request from peer %s sent upstream", pc->addr);
        evbuffer_drain(pc->sb->in, CANCEL_LEN);
        pc->waiting = 1;
        restart_timer(pc, relay->cfg.cancel_wait_timeout_ms);
        return;
    }
    if (r == CANCEL_NO_MATCH)
        source_limit_failure(relay, pc->addr, SOURCE_CANCEL_UNKNOWN, stranger,
                             "cancel request from peer %s for an unknown session ignored", pc->addr);
    conn_free(pc);
}

/* A connection that begins with a message header is a message channel
 * (peer_msg.h): handed over with the bytes read so far. */
static int message_header(const uint8_t *bytes, size_t n)
{
    if (n >= 4 && !peer_msg_length_ok(proto_get_u32(bytes)))
        return 0;
    return n < 8 || proto_get_u32(bytes + 4) == PEER_MSG_CODE;
}

static void incoming_readable(struct sbuf *sb, void *arg)
{
    struct peer_conn *pc = arg;
    size_t have = evbuffer_get_length(sb->in);
    if (pc->waiting) { /* nothing more is expected: ignored */
        evbuffer_drain(sb->in, have);
        return;
    }
    uint8_t req[CANCEL_LEN];
    evbuffer_copyout(sb->in, req, have < CANCEL_LEN ? have : CANCEL_LEN);
    if (message_header(req, have < CANCEL_LEN ? have : CANCEL_LEN) &&
        !cancel_prefix_ok(req, have < CANCEL_LEN ? have : CANCEL_LEN)) {
        if (have < PEER_MSG_HEADER)
            return;
        struct relay *relay = pc->relay;
        char from[sizeof pc->addr];
        snprintf(from, sizeof from, "%s", pc->addr);
        int stranger = !from_fleet_peer(pc);
        pc->sb = NULL; /* the channel owns it now */
        conn_free(pc);
        if (peer_msg_adopt(relay, sb, from, stranger) != 0)
            log_debug("peer connection from %s: message channel not taken", from);
        return;
    }
    if (have > CANCEL_LEN || !cancel_prefix_ok(req, have < CANCEL_LEN ? have : CANCEL_LEN)) {
        source_limit_failure(pc->relay, pc->addr, SOURCE_BAD_STARTUP, 1,
                             "peer connection from %s: not a CancelRequest; closing", pc->addr);
        conn_free(pc);
        return;
    }
    if (have == CANCEL_LEN)
        handle_request(pc, req);
}

static void incoming_drained(struct sbuf *sb, void *arg)
{
    (void)sb;
    (void)arg; /* nothing is ever written to a peer */
}

static void incoming_ready(struct sbuf *sb, void *arg)
{
    (void)sb;
    (void)arg; /* accepted connections are open from the start */
}

static void incoming_error(struct sbuf *sb, void *arg, int eof, const char *why)
{
    struct peer_conn *pc = arg;
    if (pc->waiting)
        log_debug("cancel request from peer %s: the peer closed first", pc->addr);
    else if (!eof || evbuffer_get_length(sb->in) > 0)
        source_limit_failure(pc->relay, pc->addr, SOURCE_BAD_STARTUP, 1,
                             "peer connection from %s: %s before a whole CancelRequest", pc->addr,
                             eof ? "closed" : why);
    conn_free(pc);
}

static const struct sbuf_ops incoming_ops = {incoming_readable, incoming_drained, incoming_ready, incoming_error};

static void peer_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *addr, int len, void *arg)
{
    (void)l;
    struct relay *relay = arg;
    char who[136];
    format_sockaddr(addr, who, sizeof who);
    if (relay->fleet.nincoming >= MAX_INCOMING) {
        log_warn("peer connection from %s refused: %d peer connections already open", who, MAX_INCOMING);
        evutil_closesocket(fd);
        return;
    }
    int ms = relay->cfg.client_login_timeout_ms > 0 ? relay->cfg.client_login_timeout_ms : INCOMING_TIMEOUT_MS;
    struct peer_conn *pc = conn_new(relay, sbuf_new(relay->base, fd, &incoming_ops, NULL, 0), 0, ms);
    if (!pc) {
        log_error("out of memory accepting a peer connection");
        return;
    }
    snprintf(pc->addr, sizeof pc->addr, "%s", who);
    if (len > 0 && (size_t)len <= sizeof pc->from)
        memcpy(&pc->from, addr, (size_t)len);
}

static int record_bound_address(struct fleet_peers *f, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len = sizeof ss;
    if (getsockname(evconnlistener_get_fd(f->listener), (struct sockaddr *)&ss, &len) != 0) {
        snprintf(err, errlen, "peer listener: %s", strerror(errno));
        return -1;
    }
    format_sockaddr((struct sockaddr *)&ss, f->address, sizeof f->address);
    return 0;
}

int peer_listen(struct relay *relay, peer_cancel_fn cancel_here, char *err, size_t errlen)
{
    const struct config *cfg = &relay->cfg;
    struct fleet_peers *f = &relay->fleet;
    f->cancel_here = cancel_here;
    if (!cfg->peer_host)
        return 0;
    struct evutil_addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = EVUTIL_AI_PASSIVE;
    char port[16];
    snprintf(port, sizeof port, "%d", cfg->peer_port);
    int gai = evutil_getaddrinfo(cfg->peer_host[0] ? cfg->peer_host : NULL, port, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "peer listen address %s: %s", cfg->peer_host, evutil_gai_strerror(gai));
        return -1;
    }
    /* No SO_REUSEPORT, unlike the client port: a peer port shared by two
     * proxies would hand a forwarded request to either, and neither
     * forwards it again. */
    f->listener = evconnlistener_new_bind(relay->base, peer_accept_cb, relay,
                                          LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
                                          PEER_BACKLOG, res->ai_addr, (int)res->ai_addrlen);
    evutil_freeaddrinfo(res);
    if (!f->listener) {
        snprintf(err, errlen, "cannot listen for peers on %s:%d: %s", cfg->peer_host, cfg->peer_port, strerror(errno));
        return -1;
    }
    return record_bound_address(f, err, errlen);
}

/* ---- forwarding to the proxy that issued the key ---- */

static void forward_readable(struct sbuf *sb, void *arg)
{
    (void)arg;
    evbuffer_drain(sb->in, evbuffer_get_length(sb->in)); /* a peer says nothing back */
}

/* The 16 bytes are on the wire: the peer closes once Postgres has. */
static void forward_drained(struct sbuf *sb, void *arg)
{
    (void)sb;
    struct peer_conn *pc = arg;
    pc->delivered = 1;
    log_debug("cancel request delivered to proxy slot %d at %s", pc->slot, pc->addr);
}

static void forward_ready(struct sbuf *sb, void *arg)
{
    (void)arg;
    sbuf_notify_when_drained(sb);
    sbuf_flush(sb);
}

static void forward_error(struct sbuf *sb, void *arg, int eof, const char *why)
{
    struct peer_conn *pc = arg;
    if (pc->delivered && eof && sbuf_pending_out(sb) == 0)
        log_debug("cancel request to proxy slot %d at %s answered", pc->slot, pc->addr);
    else
        log_warn("cancel request to proxy slot %d at %s not delivered: %s", pc->slot, pc->addr,
                 eof ? "connection closed" : why);
    forward_finish(pc);
}

static const struct sbuf_ops forward_ops = {forward_readable, forward_drained, forward_ready, forward_error};

static const struct fleet_peer *find_peer(const struct fleet_peers *f, int slot)
{
    for (size_t i = 0; i < f->npeers; i++)
        if (f->peers[i].slot == slot)
            return &f->peers[i];
    return NULL;
}

enum cancel_result peer_forward_cancel(struct relay *relay, uint32_t pid, uint32_t key, const char *from,
                                       cancel_done_fn done, uint64_t waiter)
{
    assert(relay && from && done);
    struct fleet_peers *f = &relay->fleet;
    int slot = (int)(key >> PEER_SLOT_SHIFT);
    const struct fleet_peer *to = slot && slot != f->slot ? find_peer(f, slot) : NULL;
    if (!to)
        return CANCEL_NO_MATCH;
    /* Whether the key is right only the peer knows: a forward costs the
     * client's source a token like a miss, or forging keys for another
     * proxy's slot would go unlimited. */
    if (!source_limit_failure(relay, from, SOURCE_CANCEL_FORWARDED, 1,
                              "cancel request from %s forwarded to proxy slot %d at %s", from, slot, to->address))
        return CANCEL_NOT_SENT;
    if (f->nforwards >= MAX_FORWARDS) {
        log_warn("cancel request for proxy slot %d at %s dropped: %d forwards already in flight", slot, to->address,
                 MAX_FORWARDS);
        return CANCEL_NOT_SENT;
    }
    struct sbuf *sb = sbuf_connect(relay->base, (const struct sockaddr *)&to->addr, to->addrlen, &forward_ops, NULL, 0);
    struct peer_conn *pc = conn_new(relay, sb, 1, relay->cfg.cancel_wait_timeout_ms);
    if (!pc) {
        log_warn("cancel request for proxy slot %d at %s not forwarded: %s", slot, to->address,
                 sb ? "out of memory" : strerror(errno));
        return CANCEL_NOT_SENT;
    }
    pc->done = done;
    pc->waiter = waiter;
    pc->slot = slot;
    snprintf(pc->addr, sizeof pc->addr, "%s", to->address);
    uint8_t req[CANCEL_LEN];
    proto_put_u32(req, CANCEL_LEN);
    proto_put_u32(req + 4, PROTO_CANCEL_CODE);
    proto_put_u32(req + 8, pid);
    proto_put_u32(req + 12, key);
    evbuffer_add(pc->sb->out, req, sizeof req); /* sent once connected, see forward_ready */
    relay->metrics.cancels_forwarded++;
    return CANCEL_SENT;
}

/* ---- the fleet's view, pushed in through relay_control.h (relay_peer.h) ---- */

void peer_set_slot(struct relay *relay, int slot)
{
    if (slot < 0 || slot > PEER_MAX_SLOT) {
        log_warn("fleet slot %d is not 0..%d; cancel keys carry no slot", slot, PEER_MAX_SLOT);
        slot = 0;
    }
    if (slot != relay->fleet.slot && slot)
        log_info("fleet slot %d: cancel keys issued from now on carry it", slot);
    else if (slot != relay->fleet.slot)
        log_info("no fleet slot: cancel keys issued from now on are all random");
    relay->fleet.slot = slot;
}

/* Numeric "host:port" with a port: peers are dialled without DNS. */
static int parse_peer(const struct relay_peer *in, struct fleet_peer *out)
{
    size_t n = strnlen(in->address, sizeof in->address);
    if (n >= sizeof out->address)
        n = sizeof out->address - 1;
    memcpy(out->address, in->address, n);
    out->address[n] = '\0';
    out->slot = in->slot;
    int len = (int)sizeof out->addr;
    if (in->slot < 1 || in->slot > PEER_MAX_SLOT ||
        evutil_parse_sockaddr_port(out->address, (struct sockaddr *)&out->addr, &len) != 0)
        return -1;
    out->addrlen = len;
    const struct sockaddr *sa = (const struct sockaddr *)&out->addr;
    int port = sa->sa_family == AF_INET ? ntohs(((const struct sockaddr_in *)sa)->sin_port)
             : sa->sa_family == AF_INET6 ? ntohs(((const struct sockaddr_in6 *)sa)->sin6_port) : 0;
    return port ? 0 : -1;
}

void peer_set_peers(struct relay *relay, const struct relay_peer *peers, size_t n)
{
    assert(relay && (peers || n == 0));
    struct fleet_peers *f = &relay->fleet;
    struct fleet_peer *fresh = n ? calloc(n, sizeof *fresh) : NULL;
    if (n && !fresh) {
        log_error("out of memory: keeping the previous list of fleet peers");
        return;
    }
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (parse_peer(&peers[i], &fresh[kept]) == 0)
            kept++;
        else
            log_warn("fleet peer slot %d at '%s' ignored: needs a slot 1..%d and a numeric HOST:PORT",
                     peers[i].slot, fresh[kept].address, PEER_MAX_SLOT);
    }
    free(f->peers);
    f->peers = fresh;
    f->npeers = kept;
    log_debug("fleet peers: %zu other proxies", kept);
}

void peer_free(struct relay *relay)
{
    struct fleet_peers *f = &relay->fleet;
    peer_msg_free_all(relay);
    for (struct peer_conn *pc = f->conns, *next; pc; pc = next) {
        next = pc->next;
        conn_free(pc);
    }
    if (f->listener)
        evconnlistener_free(f->listener);
    f->listener = NULL;
    f->address[0] = '\0';
    free(f->peers);
    f->peers = NULL;
    f->npeers = 0;
}

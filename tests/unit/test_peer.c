/* Unit tests for cancel forwarding between the proxies of a fleet: two
 * relays on one event loop, B forwarding to A's peer listener what A's
 * slot names, and the peer list taking only what it can dial. */
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "peer.h"
#include "relay.h"
#include "server.h"
#include "unit.h"

static int cancels_seen;
static uint32_t seen_pid, seen_key;

/* Stands in for session_cancel on A. */
static int record_cancel(struct server *srv, uint32_t pid, uint32_t key)
{
    (void)srv;
    cancels_seen++;
    seen_pid = pid;
    seen_key = key;
    return 1;
}

static void relay_init_for_test(struct server *srv, struct event_base *base, const char *peer_host)
{
    memset(srv, 0, sizeof *srv);
    config_init(&srv->cfg);
    srv->base = base;
    srv->cfg.peer_host = peer_host ? strdup(peer_host) : NULL;
    srv->cfg.peer_port = 0;
}

static struct server a, b;

static int delivered(void)
{
    return cancels_seen == 1 && b.fleet.nforwards == 0 && a.fleet.nincoming == 0;
}

static int forward_gone(void)
{
    return b.fleet.nforwards == 0;
}

/* Runs the loop until `done` holds or about two seconds pass. */
static void run_until(struct event_base *base, int (*done)(void))
{
    struct timespec pause = {0, 2000000};
    for (int i = 0; i < 1000 && !done(); i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        nanosleep(&pause, NULL);
    }
}

int main(void)
{
    struct event_base *base = event_base_new();
    char err[256] = "";
    relay_init_for_test(&a, base, "127.0.0.1");
    relay_init_for_test(&b, base, NULL);
    CHECK("peer: A listens", peer_listen(&a, record_cancel, err, sizeof err) == 0);
    CHECK("peer: B with the listener off", peer_listen(&b, record_cancel, err, sizeof err) == 0);
    const char *addr = relay_peer_address(&a);
    CHECK("peer: the bound address has a real port", strncmp(addr, "127.0.0.1:", 10) == 0 && atoi(addr + 10) > 0);
    CHECK("peer: no listener, no address", relay_peer_address(&b)[0] == '\0');

    relay_set_fleet_slot(&a, 7);
    relay_set_fleet_slot(&b, 9);
    struct relay_peer peers[4] = {{7, ""}, {0, "127.0.0.1:5"}, {8, "db.example.com:5432"}, {6, "127.0.0.1"}};
    snprintf(peers[0].address, sizeof peers[0].address, "%s", addr);
    relay_set_fleet_peers(&b, peers, 4);
    CHECK("peer: only numeric HOST:PORT with a slot 1..255 is kept", b.fleet.npeers == 1);

    uint32_t pid = 4242, key_a = (7u << PEER_SLOT_SHIFT) | 0x123456u;
    CHECK("peer: a key of B's own slot is not forwarded", peer_forward_cancel(&b, pid, (9u << 24) | 1) == 0);
    CHECK("peer: a key of an unknown slot is not forwarded", peer_forward_cancel(&b, pid, (8u << 24) | 1) == 0);
    CHECK("peer: a key without a slot is not forwarded", peer_forward_cancel(&b, pid, 0x00abcdefu) == 0);
    CHECK("peer: a key of A's slot is forwarded", peer_forward_cancel(&b, pid, key_a) == 1);
    CHECK("peer: the forward is counted", b.metrics.cancels_forwarded == 1);
    run_until(base, delivered);
    CHECK("peer: A's handler got the same (pid, key)", cancels_seen == 1 && seen_pid == pid && seen_key == key_a);
    CHECK("peer: nothing left in flight", b.fleet.nforwards == 0 && a.fleet.nincoming == 0 && !b.fleet.conns);

    /* A peer that is gone: the forward fails, is logged and freed. */
    uint32_t dead_port = (uint32_t)atoi(addr + 10);
    peer_free(&a);
    snprintf(peers[0].address, sizeof peers[0].address, "127.0.0.1:%u", dead_port);
    relay_set_fleet_peers(&b, peers, 1);
    CHECK("peer: a dead peer still takes the request", peer_forward_cancel(&b, pid, key_a) == 1);
    run_until(base, forward_gone);
    CHECK("peer: the failed forward is freed", b.fleet.nforwards == 0 && !b.fleet.conns);

    relay_set_fleet_peers(&b, NULL, 0);
    CHECK("peer: an empty list replaces the old one", b.fleet.npeers == 0 && !b.fleet.peers);
    CHECK("peer: no peers, no forward", peer_forward_cancel(&b, pid, key_a) == 0);
    relay_set_fleet_slot(&b, 300);
    CHECK("peer: a slot out of range means no slot", b.fleet.slot == 0);

    peer_free(&b);
    config_free(&a.cfg);
    config_free(&b.cfg);
    event_base_free(base);
    return UNIT_RESULT();
}

/* Unit tests for cancel forwarding between the proxies of a fleet: two
 * relays on one event loop, B forwarding to A's peer listener what A's
 * slot names, B told the request was answered only once A closed (which A
 * does only once its own cancel was answered), and the peer list taking
 * only what it can dial. */
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "peer.h"
#include "relay_control.h"
#include "relay.h"
#include "source_limit.h"
#include "unit.h"

static int cancels_seen;
static int a_knows_no_session;  /* record_cancel answers "no such session" */
static uint32_t seen_pid, seen_key;
static cancel_done_fn seen_done;
static uint64_t seen_waiter;
static int answers;          /* B's forward_done calls */
static uint64_t answered_waiter;

/* Stands in for session_cancel on A: the request "went upstream"; the
 * test answers it by calling seen_done, as upstream.c does once Postgres
 * closed its connection. */
static enum cancel_result record_cancel(struct relay *relay, uint32_t pid, uint32_t key, cancel_done_fn done,
                                        uint64_t waiter)
{
    (void)relay;
    cancels_seen++;
    seen_pid = pid;
    seen_key = key;
    seen_done = done;
    seen_waiter = waiter;
    return a_knows_no_session ? CANCEL_NO_MATCH : CANCEL_SENT;
}

/* Stands in for the client session on B that waits for the answer. */
static void forward_done(struct relay *relay, uint64_t waiter)
{
    (void)relay;
    answers++;
    answered_waiter = waiter;
}

static void relay_init_for_test(struct relay *relay, struct event_base *base, const char *peer_host)
{
    memset(relay, 0, sizeof *relay);
    config_init(&relay->cfg);
    relay->base = base;
    relay->cfg.peer_host = peer_host ? strdup(peer_host) : NULL;
    relay->cfg.peer_port = 0;
}

static struct relay a, b;

static int seen_by_a(void)
{
    return cancels_seen == 1;
}

static int answered(void)
{
    return answers == 1 && b.fleet.nforwards == 0 && a.fleet.nincoming == 0;
}

static int never(void)
{
    return 0;
}

static int forward_gone(void)
{
    return b.fleet.nforwards == 0;
}

/* Runs the loop until `done` holds or about `ms` milliseconds pass. */
static void run_for(struct event_base *base, int (*done)(void), int ms)
{
    struct timespec pause = {0, 2000000};
    for (int i = 0; i < ms / 2 && !done(); i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        nanosleep(&pause, NULL);
    }
}

static void run_until(struct event_base *base, int (*done)(void))
{
    run_for(base, done, 2000);
}

/* B forwards n requests for A's slot, each from another client address
 * (B's own limit is per client source), that A matches to no session;
 * returns how many reached A's handler. */
static int forward_unknown(struct event_base *base, int n, uint32_t key)
{
    int before = cancels_seen;
    char from[64];
    for (int i = 0; i < n; i++) {
        snprintf(from, sizeof from, "198.51.100.%d:4000", i);
        if (peer_forward_cancel(&b, 1, key + (uint32_t)i, from, forward_done, 100 + (uint64_t)i) == CANCEL_SENT)
            run_until(base, forward_gone); /* else nothing went out to wait for */
    }
    return cancels_seen - before;
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
    CHECK("peer: only numeric HOST:PORT with a slot 1..63 is kept", b.fleet.npeers == 1);

    const char *from = "192.0.2.1:5000";
    uint32_t pid = 4242, key_a = (7u << PEER_SLOT_SHIFT) | 0x123456u;
    CHECK("peer: a key of B's own slot is not forwarded",
          peer_forward_cancel(&b, pid, (9u << PEER_SLOT_SHIFT) | 1, from, forward_done, 1) == CANCEL_NO_MATCH);
    CHECK("peer: a key of an unknown slot is not forwarded",
          peer_forward_cancel(&b, pid, (8u << PEER_SLOT_SHIFT) | 1, from, forward_done, 1) == CANCEL_NO_MATCH);
    CHECK("peer: a key without a slot is not forwarded",
          peer_forward_cancel(&b, pid, PEER_KEY_RANDOM_MASK, from, forward_done, 1) == CANCEL_NO_MATCH);
    CHECK("peer: a key of A's slot is forwarded",
          peer_forward_cancel(&b, pid, key_a, from, forward_done, 77) == CANCEL_SENT);
    CHECK("peer: the forward is counted", b.metrics.cancels_forwarded == 1);
    run_until(base, seen_by_a);
    CHECK("peer: A's handler got the same (pid, key)", cancels_seen == 1 && seen_pid == pid && seen_key == key_a);
    run_for(base, never, 100);
    CHECK("peer: until A's cancel is answered, A keeps the connection and B waits",
          answers == 0 && a.fleet.nincoming == 1 && b.fleet.nforwards == 1);
    seen_done(&a, seen_waiter + 1000);
    run_for(base, never, 50);
    CHECK("peer: an answer for another waiter closes nothing", answers == 0 && a.fleet.nincoming == 1);
    seen_done(&a, seen_waiter);
    run_until(base, answered);
    CHECK("peer: once it is, A closes and B tells its waiter", answers == 1 && answered_waiter == 77);
    CHECK("peer: nothing left in flight", b.fleet.nforwards == 0 && a.fleet.nincoming == 0 && !b.fleet.conns);

    /* Forged keys for A's slot sent to B from many addresses: A does not
     * limit a fleet peer (B limited each address), only strangers. */
    a_knows_no_session = 1;
    struct relay_peer b_seen_from_a = {9, "127.0.0.1:1"};
    relay_set_fleet_peers(&a, &b_seen_from_a, 1);
    int burst = a.cfg.source_failures_per_s * SOURCE_BURST_S;
    CHECK("peer: a fleet peer's forwards are never refused", forward_unknown(base, burst + 10, key_a) == burst + 10);
    relay_set_fleet_peers(&a, NULL, 0);
    CHECK("peer: a stranger's are, past its burst", forward_unknown(base, burst + 40, key_a) < burst + 40);
    a_knows_no_session = 0;

    /* A peer that is gone: the forward fails, is logged and freed. */
    uint32_t dead_port = (uint32_t)atoi(addr + 10);
    peer_free(&a);
    source_limits_free(&a);
    snprintf(peers[0].address, sizeof peers[0].address, "127.0.0.1:%u", dead_port);
    relay_set_fleet_peers(&b, peers, 1);
    int answers_before = answers;
    CHECK("peer: a dead peer still takes the request",
          peer_forward_cancel(&b, pid, key_a, from, forward_done, 78) == CANCEL_SENT);
    run_until(base, forward_gone);
    CHECK("peer: the failed forward is freed", b.fleet.nforwards == 0 && !b.fleet.conns);
    CHECK("peer: and its waiter is let go", answers == answers_before + 1 && answered_waiter == 78);

    relay_set_fleet_peers(&b, NULL, 0);
    CHECK("peer: an empty list replaces the old one", b.fleet.npeers == 0 && !b.fleet.peers);
    CHECK("peer: no peers, no forward",
          peer_forward_cancel(&b, pid, key_a, from, forward_done, 1) == CANCEL_NO_MATCH);
    relay_set_fleet_slot(&b, PEER_MAX_SLOT);
    CHECK("peer: the top slot fits the key", b.fleet.slot == PEER_MAX_SLOT);
    relay_set_fleet_slot(&b, PEER_MAX_SLOT + 1);
    CHECK("peer: a slot out of range means no slot", b.fleet.slot == 0);

    peer_free(&b);
    source_limits_free(&a);
    source_limits_free(&b);
    config_free(&a.cfg);
    config_free(&b.cfg);
    event_base_free(base);
    return UNIT_RESULT();
}

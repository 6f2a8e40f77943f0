/* The cutover's hold told directly, proxy to proxy, on the peer port
 * (relay_control.h's message channels) beside the database's NOTIFY: the
 * coordinator opens a channel to every live participant that registered
 * a peer address and sends "hold", the participant answers "held" on it
 * once drained, and the coordinator sends "release" on it once it knows
 * whether the contract committed. Nothing here decides anything: the
 * database stays the source of truth (fleet.h); these messages only save
 * its round trips when they arrive first.
 *
 * Authentication: every proxy draws a random key when it starts and
 * registers it in its pgtandem.proxies row (peer_key), so only the fleet's
 * members (and whoever may read that table) know it. Each message carries
 * an HMAC-SHA256, under the participant's key, of its text, which names the
 * epoch and both proxies; a message that does not verify is refused (the
 * relay closes the channel and charges a stranger's source). A message
 * names one hold, so a replayed one matters only while that hold lasts. */
#ifndef PGTANDEM_FLEET_DIRECT_H
#define PGTANDEM_FLEET_DIRECT_H

#include <stddef.h>
#include <stdint.h>

struct relay;
struct json_t;
struct fleet_direct;

struct fleet_direct_handlers {
    /* Participant: a hold request that verified. */
    void (*hold)(void *ctx, long long epoch, int drain_ms, int hold_ms, const char *coordinator);
    /* Coordinator: `participant` says it holds `epoch`; `pids` its
     * sessions' backend PIDs ("1,2"), NULL: as its row has them. */
    void (*held)(void *ctx, long long epoch, const char *participant, const char *pids);
    /* Participant: the coordinator says hold `epoch` is over, and whether
     * its contract committed. */
    void (*release)(void *ctx, long long epoch, int committed);
    /* Coordinator: the channel to `participant` broke (or its answer did
     * not verify) before it said "held": tell it through the database. */
    void (*lost)(void *ctx, long long epoch, const char *participant);
    /* Participant: the channel hold `epoch` came on broke before its
     * release: the outcome is to be read from the database. */
    void (*part_lost)(void *ctx, long long epoch);
};

/* Registers itself as the relay's peer message handler. NULL: out of
 * memory or no randomness for the key. */
struct fleet_direct *fleet_direct_new(struct relay *relay, const char *id, const struct fleet_direct_handlers *h,
                                      void *ctx);
void fleet_direct_free(struct fleet_direct *d);
/* This proxy's key (hex), for its pgtandem.proxies row. */
const char *fleet_direct_key(const struct fleet_direct *d);

/* Coordinator: asks each of `participants` ([{id, peer, key}], those with
 * no peer or key are skipped) to hold `epoch`. Returns how many were asked. */
int fleet_direct_ask(struct fleet_direct *d, long long epoch, int drain_ms, int hold_ms,
                     const struct json_t *participants);
/* Coordinator: tells every participant still on a channel that the hold
 * is over and whether the contract committed, and closes the channels.
 * Returns how many of those that said "held" were told. */
int fleet_direct_release(struct fleet_direct *d, long long epoch, int committed);
/* Coordinator: closes the channels without a word (what happened is not
 * known here: the database tells them). */
void fleet_direct_drop(struct fleet_direct *d);

/* Participant: answers "held" for `epoch` on the channel its request came
 * on, with its sessions' backend PIDs ("1,2"; NULL or "": those its row
 * has); 0 when there is none (it was learnt from the database only) or
 * the PIDs do not fit in a message. */
int fleet_direct_held(struct fleet_direct *d, long long epoch, const char *pids);
/* Participant: whether a hold request for `epoch` came directly. */
int fleet_direct_asked(const struct fleet_direct *d, long long epoch);
/* Participant: hold `epoch` is over; its channel is closed (a newer
 * request's is left alone). */
void fleet_direct_forget(struct fleet_direct *d, long long epoch);

struct fleet_direct_counts {
    unsigned long long asked;     /* hold requests sent (coordinator) */
    unsigned long long refused;   /* messages that did not verify */
    unsigned long long failed;    /* channels that broke before the participant answered */
};
void fleet_direct_counts(const struct fleet_direct *d, struct fleet_direct_counts *out);

#endif

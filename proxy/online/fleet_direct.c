/* The cutover's hold over the peer port (see fleet_direct.h). Messages are
 * one line of text, their last word the HMAC of the rest:
 *
 *   coordinator -> participant   hold <epoch> <drain_ms> <hold_ms> <coordinator> <participant> <mac>
 *   participant -> coordinator   held <epoch> <participant> <pids> <mac>
 *   coordinator -> participant   release <epoch> <0|1> <participant> <mac>
 *
 * all under the participant's key, which the participant knows as its own
 * and the coordinator read from pgtandem.proxies with the hold's row.
 * <pids> are the backend PIDs of the participant's sessions, comma
 * separated, "-" for none, or "=" for those its row has (its last
 * heartbeat's): the
 * coordinator writes them with the acknowledgement in the contract's
 * transaction, so the participant writes nothing itself. */
#include "fleet_direct.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "relay_control.h"

#define KEY_BYTES 32
#define KEY_HEX (2 * KEY_BYTES)
#define MAC_HEX 64 /* SHA-256 */
#define ID_MAX 96
#define TEXT_MAX 940 /* with " <mac>": within the relay's 1024 bytes a peer message */

/* Coordinator: one participant asked directly. */
struct asked {
    char id[ID_MAX];
    char key[KEY_HEX + 1];
    uint64_t channel; /* 0: closed or broken: it hears from the database */
    int answered;     /* said "held": closing the channel once its hold ends is normal */
};

struct fleet_direct {
    struct relay *relay;
    char id[ID_MAX];
    char key[KEY_HEX + 1];
    struct fleet_direct_handlers h;
    void *ctx;
    long long co_epoch;              /* coordinator: the hold being asked for */
    struct asked *asked;             /* grown to the fleet's size, kept between holds */
    size_t nasked, cap;
    long long part_epoch;            /* participant: the hold asked for directly (0: none) */
    uint64_t part_channel;           /* the channel it came on (0: gone) */
    struct fleet_direct_counts counts;
};

static void hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* out: MAC_HEX + 1 bytes. */
static int mac_of(const char *key, const char *text, char *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)text, strlen(text), md, &len) ||
        len * 2 != MAC_HEX) {
        out[0] = '\0';
        return -1;
    }
    hex(md, len, out);
    return 0;
}

/* The message's text without its last word, if that word is the MAC of
 * the rest under `key`. */
static int verified(const char *msg, const char *key, char *body, size_t cap)
{
    const char *sp = strrchr(msg, ' ');
    char want[MAC_HEX + 1];
    if (!sp || !key[0] || strlen(sp + 1) != MAC_HEX || (size_t)(sp - msg) >= cap)
        return 0;
    memcpy(body, msg, (size_t)(sp - msg));
    body[sp - msg] = '\0';
    return mac_of(key, body, want) == 0 && CRYPTO_memcmp(want, sp + 1, MAC_HEX) == 0;
}

static int send_signed(struct fleet_direct *d, uint64_t channel, const char *key, const char *text)
{
    char mac[MAC_HEX + 1], msg[TEXT_MAX + MAC_HEX + 2];
    if (mac_of(key, text, mac) != 0)
        return -1;
    snprintf(msg, sizeof msg, "%s %s", text, mac);
    return relay_peer_send(d->relay, channel, msg);
}

static struct asked *asked_on(struct fleet_direct *d, uint64_t channel)
{
    for (size_t i = 0; i < d->nasked; i++)
        if (d->asked[i].channel == channel)
            return &d->asked[i];
    return NULL;
}

/* "1234,5678", "-" (none) or "=" (as the row has them): digits and
 * commas only, as the SQL casts them. */
static int pids_valid(const char *pids)
{
    if (!strcmp(pids, "=") || !strcmp(pids, "-"))
        return 1;
    for (const char *p = pids; *p; p++)
        if ((*p < '0' || *p > '9') && *p != ',')
            return 0;
    return 1;
}

/* Coordinator: an answer on a channel it opened. */
static void on_answer(struct fleet_direct *d, struct asked *a, const char *msg)
{
    char body[TEXT_MAX], who[ID_MAX], pids[TEXT_MAX] = "=";
    long long epoch = 0;
    int end = 0, n = 0;
    int ok = verified(msg, a->key, body, sizeof body);
    /* "held <epoch> <id>" (a participant of an earlier build, which
     * writes its own row) or with its PIDs */
    if (ok) {
        n = sscanf(body, "held %lld %95s %939s%n", &epoch, who, pids, &end);
        if (n == 2)
            n = sscanf(body, "held %lld %95s%n", &epoch, who, &end) == 2 ? 2 : 0;
    }
    if (!ok || n < 2 || body[end] != '\0' || strcmp(who, a->id) != 0 || !pids_valid(pids)) {
        d->counts.refused++;
        log_warn("fleet: a direct answer from %s did not verify; it is left to the database", a->id);
        relay_peer_close(d->relay, a->channel);
        a->channel = 0;
        if (d->h.lost)
            d->h.lost(d->ctx, d->co_epoch, a->id);
        return;
    }
    a->answered = 1;
    if (epoch == d->co_epoch && d->h.held)
        d->h.held(d->ctx, epoch, a->id, strcmp(pids, "=") ? pids : NULL);
}

/* Participant: a request on a channel another proxy opened. Anything that
 * does not verify under our key is refused, which closes the channel. */
static int on_request(struct fleet_direct *d, uint64_t channel, const char *msg)
{
    char body[TEXT_MAX], coordinator[ID_MAX], target[ID_MAX];
    long long epoch = 0;
    int drain_ms = 0, hold_ms = 0, committed = 0, end = 0;
    if (!verified(msg, d->key, body, sizeof body)) {
        d->counts.refused++;
        log_debug("fleet: a peer message that does not verify under this proxy's key refused");
        return 0;
    }
    if (sscanf(body, "hold %lld %d %d %95s %95s%n", &epoch, &drain_ms, &hold_ms, coordinator, target, &end) == 5 &&
        body[end] == '\0' && !strcmp(target, d->id) && epoch > 0 && drain_ms > 0 && hold_ms > 0) {
        if (d->part_channel && d->part_channel != channel)
            relay_peer_close(d->relay, d->part_channel);
        d->part_epoch = epoch;
        d->part_channel = channel;
        if (d->h.hold)
            d->h.hold(d->ctx, epoch, drain_ms, hold_ms, coordinator);
        return 1;
    }
    if (sscanf(body, "release %lld %d %95s%n", &epoch, &committed, target, &end) == 3 && body[end] == '\0' &&
        !strcmp(target, d->id) && (committed == 0 || committed == 1)) {
        if (d->h.release)
            d->h.release(d->ctx, epoch, committed);
        return 1;
    }
    d->counts.refused++;
    log_debug("fleet: a verified peer message of no known form refused: %.60s", body);
    return 0;
}

static int on_message(void *ctx, uint64_t channel, const char *msg)
{
    struct fleet_direct *d = ctx;
    struct asked *a = asked_on(d, channel);
    if (!msg) { /* broken: whoever was on it hears from the database */
        if (a && a->answered) { /* it held: its release goes through the database */
            a->channel = 0;
        } else if (a) {
            a->channel = 0;
            d->counts.failed++;
            log_info("fleet: direct channel to %s for hold %lld broke; it hears from the database", a->id,
                     d->co_epoch);
            if (d->h.lost)
                d->h.lost(d->ctx, d->co_epoch, a->id);
        } else if (channel == d->part_channel) {
            d->part_channel = 0;
            if (d->h.part_lost)
                d->h.part_lost(d->ctx, d->part_epoch);
        }
        return 0;
    }
    if (a) {
        on_answer(d, a, msg);
        return 1;
    }
    return on_request(d, channel, msg);
}

struct fleet_direct *fleet_direct_new(struct relay *relay, const char *id, const struct fleet_direct_handlers *h,
                                      void *ctx)
{
    struct fleet_direct *d = calloc(1, sizeof *d);
    unsigned char raw[KEY_BYTES];
    if (!d || RAND_bytes(raw, sizeof raw) != 1) {
        free(d);
        return NULL;
    }
    hex(raw, sizeof raw, d->key);
    OPENSSL_cleanse(raw, sizeof raw);
    d->relay = relay;
    snprintf(d->id, sizeof d->id, "%s", id);
    d->h = *h;
    d->ctx = ctx;
    relay_set_peer_messages(relay, on_message, d);
    return d;
}

void fleet_direct_free(struct fleet_direct *d)
{
    if (!d)
        return;
    fleet_direct_drop(d);
    fleet_direct_forget(d, d->part_epoch);
    relay_set_peer_messages(d->relay, NULL, NULL);
    free(d->asked);
    OPENSSL_cleanse(d->key, sizeof d->key);
    free(d);
}

const char *fleet_direct_key(const struct fleet_direct *d)
{
    return d->key;
}

/* Room for one more participant (the fleet has no upper bound here). */
static struct asked *next_asked(struct fleet_direct *d)
{
    if (d->nasked == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 64;
        struct asked *grown = realloc(d->asked, cap * sizeof *grown);
        if (!grown)
            return NULL;
        d->asked = grown;
        d->cap = cap;
    }
    return &d->asked[d->nasked];
}

int fleet_direct_ask(struct fleet_direct *d, long long epoch, int drain_ms, int hold_ms,
                     const struct json_t *participants)
{
    fleet_direct_drop(d);
    d->co_epoch = epoch;
    size_t i;
    json_t *p;
    json_array_foreach((json_t *)participants, i, p) {
        const char *id = json_string_value(json_object_get(p, "id"));
        const char *peer = json_string_value(json_object_get(p, "peer"));
        const char *key = json_string_value(json_object_get(p, "key"));
        struct asked *a = next_asked(d);
        if (!a || !id || !peer || !peer[0] || !key || strlen(key) != KEY_HEX || strlen(id) >= ID_MAX)
            continue;
        uint64_t ch = relay_peer_open(d->relay, peer);
        if (!ch)
            continue;
        memset(a, 0, sizeof *a);
        snprintf(a->id, sizeof a->id, "%s", id);
        snprintf(a->key, sizeof a->key, "%s", key);
        a->channel = ch;
        char text[TEXT_MAX];
        snprintf(text, sizeof text, "hold %lld %d %d %s %s", epoch, drain_ms, hold_ms, d->id, id);
        if (send_signed(d, ch, a->key, text) != 0) {
            relay_peer_close(d->relay, ch);
            continue;
        }
        d->nasked++;
        d->counts.asked++;
    }
    return (int)d->nasked;
}

int fleet_direct_release(struct fleet_direct *d, long long epoch, int committed)
{
    int told = 0;
    for (size_t i = 0; i < d->nasked; i++) {
        struct asked *a = &d->asked[i];
        if (!a->channel)
            continue;
        char text[TEXT_MAX];
        snprintf(text, sizeof text, "release %lld %d %s", epoch, committed ? 1 : 0, a->id);
        if (send_signed(d, a->channel, a->key, text) != 0)
            log_info("fleet: the direct release of hold %lld to %s was not sent; it hears from the database", epoch,
                     a->id);
        else
            told += a->answered;
    }
    fleet_direct_drop(d);
    return told;
}

void fleet_direct_drop(struct fleet_direct *d)
{
    for (size_t i = 0; i < d->nasked; i++)
        if (d->asked[i].channel)
            relay_peer_close(d->relay, d->asked[i].channel);
    d->nasked = 0;
    d->co_epoch = 0;
}

int fleet_direct_held(struct fleet_direct *d, long long epoch, const char *pids)
{
    if (!d->part_channel || d->part_epoch != epoch)
        return 0;
    char text[TEXT_MAX];
    int n = snprintf(text, sizeof text, "held %lld %s %s", epoch, d->id, pids && pids[0] ? pids : "=");
    if (n < 0 || (size_t)n >= sizeof text)
        return 0;
    return send_signed(d, d->part_channel, d->key, text) == 0;
}

int fleet_direct_asked(const struct fleet_direct *d, long long epoch)
{
    return epoch && d->part_epoch == epoch;
}

void fleet_direct_forget(struct fleet_direct *d, long long epoch)
{
    if (epoch != d->part_epoch)
        return;
    if (d->part_channel)
        relay_peer_close(d->relay, d->part_channel);
    d->part_channel = 0;
    d->part_epoch = 0;
}

void fleet_direct_counts(const struct fleet_direct *d, struct fleet_direct_counts *out)
{
    *out = d->counts;
}

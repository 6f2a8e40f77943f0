/* Pause/resume: hold new transactions at their boundaries so that DDL can
 * run with nothing in flight, then release the held messages in order.
 * The bookkeeping lives in struct pause_state (relay.h). */
#ifndef PGTANDEM_PAUSE_H
#define PGTANDEM_PAUSE_H

#include <jansson.h>
#include <stdint.h>

#include "compiler.h"
#include "relay.h"

/* Starts holding (or joins a pause in progress). `done` is called once,
 * when drained or after timeout_ms. Returns -1 when too many callers wait. */
PGT_MUSTCHECK int pause_begin(struct relay *relay, int timeout_ms, pause_done_fn done, void *ctx);
/* The same, saying why for /status, /metrics and the log: kind is a short
 * word ("cutover", "fleet_hold", "operator_pause", "refresh"), reason a
 * sentence. pause_begin is an operator's pause. */
PGT_MUSTCHECK int pause_begin_for(struct relay *relay, const char *kind, const char *reason, int timeout_ms,
                                  pause_done_fn done, void *ctx);

/* Whatever holds sessions now: a pause or the fleet fence (which wins). */
struct pause_hold_info {
    uint32_t held;          /* sessions with a message held */
    int paused, fenced;
    const char *kind;       /* "fence", a pause's kind, or "none" */
    const char *reason;
    uint64_t for_ms;        /* since the hold began */
};
void pause_hold_info(const struct relay *relay, struct pause_hold_info *out);
/* {"held_sessions", "fenced", "reason", "detail", "for_ms", "fence_bound_ms"} for GET /status. */
json_t *pause_hold_json(const struct relay *relay);
/* Starts the watch (idempotent): while a pause or a fleet lease may hold
 * sessions it logs the hold when it starts and every 5 s while it lasts,
 * and closes the sessions of a fence past its bound. */
PGT_MUSTCHECK int pause_watch(struct relay *relay);
/* The drain decision on its own: given the pause and how many sessions are
 * ready and not at a boundary (relay->counts.busy), what happens now. */
enum pause_drain {
    PAUSE_NOT_PAUSED,      /* nothing to decide */
    PAUSE_ALREADY_DRAINED, /* waiters who joined late are told at once */
    PAUSE_STILL_BUSY,      /* some session is still inside a transaction */
    PAUSE_NOW_DRAINED      /* every session is at a boundary: notify */
};
enum pause_drain pause_drain_decision(int paused, int drained, uint32_t busy_sessions);
/* Re-checks whether every session is at a boundary (O(1): a counter). */
void pause_check_drained(struct relay *relay);
/* Lets every session holding a message go on (in order): the end of a
 * pause, or a renewed fleet lease (relay_set_lease). */
void pause_release_sessions(struct relay *relay);
/* Releases held messages in order; returns how long traffic was held (us). */
uint64_t pause_resume(struct relay *relay);
/* Forgets a waiter whose context is going away. */
void pause_forget_waiter(struct relay *relay, void *ctx);
void pause_free(struct relay *relay);

#endif

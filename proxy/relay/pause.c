/* Pause/resume. While paused, sessions hold their next message at a
 * transaction boundary (see session_relay.c: paused_hold); this module only keeps
 * the bookkeeping: who waits for the drain, the timeout, and the release.
 * Sessions do not call in here (this module sits above them): they
 * activate check_ev through server_boundary_reached, and the drain is
 * re-checked once per loop turn however many sessions reached a boundary. */
#include "pause.h"

#include <assert.h>
#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "session.h"

static void notify_waiters(struct relay *relay, int ok, uint64_t waited_us)
{
    struct pause_state *p = &relay->pause;
    /* Copy first: a waiter may start another pause from its callback. */
    struct pause_waiter waiters[PAUSE_MAX_WAITERS];
    int n = p->nwaiters;
    assert(n >= 0 && n <= PAUSE_MAX_WAITERS);
    memcpy(waiters, p->waiters, sizeof waiters);
    p->nwaiters = 0;
    for (int i = 0; i < n; i++)
        if (waiters[i].done)
            waiters[i].done(waiters[i].ctx, ok, waited_us);
}

static void pause_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct relay *relay = arg;
    struct pause_state *p = &relay->pause;
    if (!p->paused || p->drained)
        return;
    uint64_t waited = relay_now_us(relay) - p->started_us;
    log_warn("pause: sessions did not reach a transaction boundary within %llu ms; resuming",
             (unsigned long long)(waited / 1000));
    /* Waiters list the busy sessions before traffic moves again. */
    notify_waiters(relay, 0, waited);
    pause_resume(relay);
}

static void check_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pause_check_drained(arg);
}

int pause_begin(struct relay *relay, int timeout_ms, pause_done_fn done, void *ctx)
{
    return pause_begin_for(relay, "operator_pause", "an operator's POST /pause", timeout_ms, done, ctx);
}

int pause_begin_for(struct relay *relay, const char *kind, const char *reason, int timeout_ms, pause_done_fn done,
                    void *ctx)
{
    struct pause_state *p = &relay->pause;
    assert(relay && kind && reason);
    if (p->nwaiters == PAUSE_MAX_WAITERS)
        return -1;
    if (!p->check_ev && !(p->check_ev = event_new(relay->base, -1, 0, check_cb, relay)))
        return -1;
    /* A pause without its timeout could hold traffic forever, and one
     * without the watch would never fail an overdue fence: refused. */
    if (!p->timeout_timer && !(p->timeout_timer = evtimer_new(relay->base, pause_timeout_cb, relay)))
        return -1;
    if (!p->paused && pause_watch(relay) != 0)
        return -1;
    if (!p->drained) {
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        if (evtimer_add(p->timeout_timer, &tv) != 0) {
            log_error("pause: could not set its timeout; refused");
            return -1;
        }
    }
    p->waiters[p->nwaiters++] = (struct pause_waiter){done, ctx};
    if (!p->paused) {
        p->paused = 1;
        p->drained = 0;
        p->started_us = relay_now_us(relay);
        p->held_messages = 0;
        snprintf(p->kind, sizeof p->kind, "%s", kind);
        snprintf(p->reason, sizeof p->reason, "%s", reason);
        log_info("pause: holding new transactions (timeout %d ms): %s", timeout_ms, reason);
    }
    pause_check_drained(relay);
    return 0;
}

enum pause_drain pause_drain_decision(int paused, int drained, uint32_t busy_sessions)
{
    if (!paused)
        return PAUSE_NOT_PAUSED;
    if (drained)
        return PAUSE_ALREADY_DRAINED;
    return busy_sessions ? PAUSE_STILL_BUSY : PAUSE_NOW_DRAINED;
}

void pause_check_drained(struct relay *relay)
{
    assert(relay);
    struct pause_state *p = &relay->pause;
    if (!p->paused)
        return;
    if (p->drained) {
        if (p->nwaiters)
            notify_waiters(relay, 1, p->drained_us - p->started_us);
        return;
    }
#ifdef PGT_DEBUG
    uint32_t busy = 0;
    for (const struct session *s = relay->sessions; s; s = s->next)
        busy += !session_at_boundary(s);
    assert(busy == relay->counts.busy);
#endif
    if (pause_drain_decision(p->paused, p->drained, relay->counts.busy) != PAUSE_NOW_DRAINED)
        return;
    p->drained = 1;
    p->drained_us = relay_now_us(relay);
    if (p->timeout_timer)
        evtimer_del(p->timeout_timer);
    log_info("pause: all sessions at a transaction boundary after %llu us",
             (unsigned long long)(p->drained_us - p->started_us));
    notify_waiters(relay, 1, p->drained_us - p->started_us);
}

void pause_release_sessions(struct relay *relay)
{
    assert(relay);
    for (struct session *s = relay->sessions, *next; s; s = next) {
        next = s->next;
        session_release_held(s);
    }
}

uint64_t pause_resume(struct relay *relay)
{
    struct pause_state *p = &relay->pause;
    if (!p->paused)
        return 0;
    assert(p->started_us <= relay_now_us(relay));
    uint64_t held = relay_now_us(relay) - p->started_us;
    p->paused = 0;
    p->drained = 0;
    p->last_held_ms = held / 1000;
    p->last_held_messages = p->held_messages;
    if (p->timeout_timer)
        evtimer_del(p->timeout_timer);
    /* Waiters still pending (joined after the drain) learn it ended. */
    if (p->nwaiters)
        notify_waiters(relay, 0, held);
    pause_release_sessions(relay);
    log_info("pause: resumed after %llu us, %u messages were held", (unsigned long long)held, p->held_messages);
    return held;
}

void pause_forget_waiter(struct relay *relay, void *ctx)
{
    struct pause_state *p = &relay->pause;
    for (int i = 0; i < p->nwaiters; i++)
        if (p->waiters[i].ctx == ctx)
            p->waiters[i].done = NULL;
}

/* ---- the watch: every hold is visible and a fence is bounded ---- */

#define WATCH_TICK_MS 250
#define WATCH_LOG_EVERY_US 5000000u

static uint32_t count_held(const struct relay *relay)
{
    uint32_t n = 0;
    for (const struct session *s = relay->sessions; s; s = s->next)
        n += s->holding != 0;
    return n;
}

void pause_hold_info(const struct relay *relay, struct pause_hold_info *out)
{
    assert(relay && out);
    const struct pause_state *p = &relay->pause;
    uint64_t now = relay_now_us(relay);
    out->held = count_held(relay);
    out->paused = p->paused;
    out->fenced = relay_lease_expired(relay);
    out->for_ms = 0;
    out->kind = "none";
    out->reason = "";
    if (out->fenced) {
        out->kind = "fence";
        out->reason = relay->fence_why[0] ? relay->fence_why : "the fleet lease ran out";
        out->for_ms = (now - relay->lease_deadline_us) / 1000;
    } else if (p->paused) {
        out->kind = p->kind[0] ? p->kind : "pause";
        out->reason = p->reason;
        out->for_ms = (now - p->started_us) / 1000;
    }
}

json_t *pause_hold_json(const struct relay *relay)
{
    struct pause_hold_info h;
    pause_hold_info(relay, &h);
    return json_pack("{s:i,s:b,s:s,s:s,s:I,s:I}", "held_sessions", (int)h.held, "fenced", h.fenced, "reason",
                     h.kind, "detail", h.reason, "for_ms", (json_int_t)h.for_ms, "fence_bound_ms",
                     (json_int_t)relay->fence_bound_ms);
}

/* A fence past its bound ends for the sessions it holds: they are at a
 * transaction boundary, so closing them loses nothing in flight. */
static void fail_fenced_sessions(struct relay *relay)
{
    uint32_t n = 0;
    for (struct session *s = relay->sessions; s; s = s->next)
        if (s->holding && s->state != SESS_CLOSING) {
            session_fail(s, SQLSTATE_ADMIN_SHUTDOWN, "%s", relay->fence_error);
            n++;
        }
    if (n)
        log_error("fence: %s; %u held session%s closed with 57P01", relay->fence_error, n, n == 1 ? "" : "s");
}

static void watch_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct relay *relay = arg;
    struct pause_state *p = &relay->pause;
    struct pause_hold_info h;
    pause_hold_info(relay, &h);
    uint64_t now = relay_now_us(relay);
    int holding = h.paused || h.fenced;
    if (holding && (!p->watch_holding || now - p->watch_logged_us >= WATCH_LOG_EVERY_US)) {
        /* a fence is trouble; a pause is the cutover (or an operator) at work */
        log_msg(h.fenced ? LOG_LEVEL_WARN : LOG_LEVEL_INFO, "hold: %u session%s held for %.1f s (%s): %s", h.held,
                h.held == 1 ? "" : "s", (double)h.for_ms / 1000.0, h.kind, h.reason);
        p->watch_logged_us = now;
    } else if (!holding && p->watch_holding) {
        log_info("hold: lifted; nothing is held");
    }
    p->watch_holding = holding;
    if (h.fenced && relay_fence_overdue(relay))
        fail_fenced_sessions(relay);
    if (!holding && !relay->lease_deadline_us)
        evtimer_del(p->watch_timer);
}

int pause_watch(struct relay *relay)
{
    struct pause_state *p = &relay->pause;
    if (!p->watch_timer && !(p->watch_timer = event_new(relay->base, -1, EV_PERSIST, watch_cb, relay))) {
        log_error("hold: could not start the watch (out of memory)");
        return -1;
    }
    if (!evtimer_pending(p->watch_timer, NULL)) {
        struct timeval tv = {0, WATCH_TICK_MS * 1000};
        if (evtimer_add(p->watch_timer, &tv) != 0) {
            log_error("hold: could not start the watch");
            return -1;
        }
        event_active(p->watch_timer, EV_TIMEOUT, 0); /* a hold starting now is told now */
    }
    return 0;
}

void pause_free(struct relay *relay)
{
    if (relay->pause.watch_timer)
        event_free(relay->pause.watch_timer);
    relay->pause.watch_timer = NULL;
    if (relay->pause.timeout_timer)
        event_free(relay->pause.timeout_timer);
    if (relay->pause.check_ev)
        event_free(relay->pause.check_ev);
    relay->pause.timeout_timer = relay->pause.check_ev = NULL;
}

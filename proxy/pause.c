/* Pause/resume. While paused, sessions hold their next message at a
 * transaction boundary (see session.c: paused_hold); this module only keeps
 * the bookkeeping: who waits for the drain, the timeout, and the release.
 * Sessions do not call in here (this module sits above them): they
 * activate check_ev through server_boundary_reached, and the drain is
 * re-checked once per loop turn however many sessions reached a boundary. */
#include "pause.h"

#include <assert.h>
#include <event2/event.h>
#include <string.h>

#include "log.h"
#include "session.h"

static void notify_waiters(struct server *srv, int ok, uint64_t waited_us)
{
    struct pause_state *p = &srv->pause;
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
    struct server *srv = arg;
    struct pause_state *p = &srv->pause;
    if (!p->paused || p->drained)
        return;
    uint64_t waited = server_now_us(srv) - p->started_us;
    log_warn("pause: sessions did not reach a transaction boundary within %llu ms; resuming",
             (unsigned long long)(waited / 1000));
    /* Waiters list the busy sessions before traffic moves again. */
    notify_waiters(srv, 0, waited);
    pause_resume(srv);
}

static void check_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pause_check_drained(arg);
}

int pause_begin(struct server *srv, int timeout_ms, pause_done_fn done, void *ctx)
{
    struct pause_state *p = &srv->pause;
    if (p->nwaiters == PAUSE_MAX_WAITERS)
        return -1;
    if (!p->check_ev && !(p->check_ev = event_new(srv->base, -1, 0, check_cb, srv)))
        return -1;
    p->waiters[p->nwaiters++] = (struct pause_waiter){done, ctx};
    if (!p->paused) {
        p->paused = 1;
        p->drained = 0;
        p->started_us = server_now_us(srv);
        p->held_messages = 0;
        if (!p->timeout_timer)
            p->timeout_timer = evtimer_new(srv->base, pause_timeout_cb, srv);
        log_info("pause: holding new transactions (timeout %d ms)", timeout_ms);
    }
    if (p->timeout_timer && !p->drained) {
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        evtimer_add(p->timeout_timer, &tv);
    }
    pause_check_drained(srv);
    return 0;
}

void pause_check_drained(struct server *srv)
{
    struct pause_state *p = &srv->pause;
    if (!p->paused)
        return;
    if (p->drained) {
        if (p->nwaiters)
            notify_waiters(srv, 1, p->drained_us - p->started_us);
        return;
    }
    for (struct session *s = srv->sessions; s; s = s->next)
        if (!session_at_boundary(s))
            return;
    p->drained = 1;
    p->drained_us = server_now_us(srv);
    if (p->timeout_timer)
        evtimer_del(p->timeout_timer);
    log_info("pause: all sessions at a transaction boundary after %llu us",
             (unsigned long long)(p->drained_us - p->started_us));
    notify_waiters(srv, 1, p->drained_us - p->started_us);
}

void pause_release_sessions(struct server *srv)
{
    for (struct session *s = srv->sessions, *next; s; s = next) {
        next = s->next;
        session_release_held(s);
    }
}

uint64_t pause_resume(struct server *srv)
{
    struct pause_state *p = &srv->pause;
    if (!p->paused)
        return 0;
    assert(p->started_us <= server_now_us(srv));
    uint64_t held = server_now_us(srv) - p->started_us;
    p->paused = 0;
    p->drained = 0;
    p->last_held_ms = held / 1000;
    p->last_held_messages = p->held_messages;
    if (p->timeout_timer)
        evtimer_del(p->timeout_timer);
    /* Waiters still pending (joined after the drain) learn it ended. */
    if (p->nwaiters)
        notify_waiters(srv, 0, held);
    pause_release_sessions(srv);
    log_info("pause: resumed after %llu us, %u messages were held", (unsigned long long)held, p->held_messages);
    return held;
}

void pause_forget_waiter(struct server *srv, void *ctx)
{
    struct pause_state *p = &srv->pause;
    for (int i = 0; i < p->nwaiters; i++)
        if (p->waiters[i].ctx == ctx)
            p->waiters[i].done = NULL;
}

void pause_free(struct server *srv)
{
    if (srv->pause.timeout_timer)
        event_free(srv->pause.timeout_timer);
    if (srv->pause.check_ev)
        event_free(srv->pause.check_ev);
    srv->pause.timeout_timer = srv->pause.check_ev = NULL;
}

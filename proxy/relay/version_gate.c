/* A session that declares a version (pgtandem.version, db@name) which this
 * proxy neither routes nor has heard of waits, at its first transaction,
 * for the fleet's next look at the migrations table. A migration started
 * through another proxy reaches this one by a notification or the next
 * heartbeat; a release connecting here in between would otherwise be
 * served the old shape (its new names fail; its `SELECT *` reads the old
 * columns) until the route arrives. Found by the nemesis: the forwarder's
 * flows reset, the notification came late, and a new-release reader got
 * `column "body" does not exist` through a proxy that had not yet loaded
 * the rename.
 *
 * "The next look" is one the fleet started after the session arrived, and
 * "applied" means its findings are in place (the engine loaded the
 * migration it found and pushed its route). Names the database has, in any
 * status, pass at once (a release built with a completed migration does
 * not wait at every login); a name nobody has waits one look. With no
 * answer within the bound (the fleet's lease: the database cannot be
 * reached) the session is refused with 57P03, to connect again, rather
 * than served a shape that may be the wrong one.
 * Without a fleet (no --engine-db) the gate is off: routes are local. */
#include "version_gate.h"

#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "log.h"
#include "proto.h"
#include "relay.h"
#include "relay_control.h"
#include "session.h"

static int known(const struct version_gate *g, const char *name)
{
    for (unsigned i = 0; i < g->nknown; i++)
        if (!strcmp(g->known[i], name))
            return 1;
    return 0;
}

static int passes(const struct session *s)
{
    const struct version_gate *g = &s->relay->vgate;
    const char *v = s->startup->version;
    return g->looks_applied >= s->vgate_look || known(g, v) || relay_route_index(s->relay, v) >= 0;
}

/* The session waits no more: its look came. */
static void stop_waiting(struct session *s)
{
    struct version_gate *g = &s->relay->vgate;
    s->vgate_look = 0;
    if (g->waiting)
        g->waiting--;
}

/* Its bound passed with no answer (the database out of reach): serving it
 * the shape as it stands could be the wrong one, silently; an error it can
 * retry on (another proxy, or this one once it hears) is not. */
static void give_up(struct session *s)
{
    int bound = s->relay->vgate.bound_ms;
    stop_waiting(s);
    log_warn("session %llu: declares version %s, which this proxy has not heard of, and the fleet could not ask "
             "the database within %d ms: refused", (unsigned long long)s->id, s->startup->version, bound);
    session_fail(s, SQLSTATE_CANNOT_CONNECT_NOW,
                 "pgtandem: this proxy has not heard of version \"%s\" and could not ask the database within %d ms; "
                 "connect again", s->startup->version, bound);
}

/* Lets go of every session whose look came (or whose bound passed), and
 * arms the timer for the next bound. */
static void sweep(struct relay *relay)
{
    struct version_gate *g = &relay->vgate;
    uint64_t now = relay_now_us(relay), next = 0;
    struct session *s = relay->sessions, *after;
    for (; s && g->waiting; s = after) {
        after = s->next; /* releasing may free it */
        if (!s->vgate_look)
            continue;
        if (passes(s)) {
            stop_waiting(s);
            session_release_held(s);
        } else if (now >= s->vgate_until_us) {
            give_up(s);
        }
        else if (!next || s->vgate_until_us < next)
            next = s->vgate_until_us;
    }
    if (next && g->timer) {
        struct timeval tv = {(time_t)((next - now) / 1000000), (suseconds_t)((next - now) % 1000000)};
        evtimer_add(g->timer, &tv);
    }
}

static void on_bound(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sweep(arg);
}

int version_gate_decide(struct session *s)
{
    struct version_gate *g = &s->relay->vgate;
    if (!s->vgate_checked) {
        s->vgate_checked = 1;
        const char *v = s->startup ? s->startup->version : NULL;
        if (!g->bound_ms || !v || !*v || !g->timer)
            return 0;
        s->vgate_look = g->looks_started + 1;
        if (passes(s)) {
            s->vgate_look = 0;
            return 0;
        }
        s->vgate_until_us = relay_now_us(s->relay) + (uint64_t)g->bound_ms * 1000;
        g->waiting++;
        if (!evtimer_pending(g->timer, NULL)) {
            struct timeval tv = {g->bound_ms / 1000, (g->bound_ms % 1000) * 1000};
            evtimer_add(g->timer, &tv);
        }
        log_debug("session %llu: waits for the fleet's next look before serving version %s",
                  (unsigned long long)s->id, v);
    }
    if (!s->vgate_look)
        return 0;
    if (passes(s)) {
        stop_waiting(s);
        return 0;
    }
    return 1; /* past its bound too: the timer, due now, refuses it */
}

void version_gate_free(struct relay *relay)
{
    if (relay->vgate.timer)
        event_free(relay->vgate.timer);
    relay->vgate.timer = NULL;
}

/* ---- relay_control.h ---- */

void relay_version_gate(struct relay *relay, int bound_ms)
{
    struct version_gate *g = &relay->vgate;
    if (!g->timer && bound_ms > 0)
        g->timer = evtimer_new(relay->base, on_bound, relay);
    g->bound_ms = g->timer ? bound_ms : 0;
}

void relay_version_known(struct relay *relay, const char *name)
{
    struct version_gate *g = &relay->vgate;
    if (!name || !*name || strlen(name) > MIG_NAME_MAX || known(g, name))
        return;
    snprintf(g->known[g->next], sizeof g->known[g->next], "%s", name);
    g->next = (g->next + 1) % VERSION_GATE_KNOWN;
    if (g->nknown < VERSION_GATE_KNOWN)
        g->nknown++;
    if (g->waiting)
        sweep(relay);
}

uint64_t relay_version_look_started(struct relay *relay)
{
    return ++relay->vgate.looks_started;
}

void relay_version_look_applied(struct relay *relay, uint64_t look)
{
    struct version_gate *g = &relay->vgate;
    if (look > g->looks_applied)
        g->looks_applied = look;
    if (g->waiting)
        sweep(relay);
}

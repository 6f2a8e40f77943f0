/* Unit tests for the session state machine: the transition table, the
 * per-state counts through a random walk, and session_set_state on real
 * session structs (counts kept, a forbidden move closing only that
 * session when invariant checks are off). */
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "session.h"
#include "session_state.h"
#include "unit.h"

static void test_table(void)
{
    CHECK("table: startup may offer TLS", session_state_allowed(SESS_STARTUP, SESS_TLS_ACCEPT));
    CHECK("table: TLS goes back to startup", session_state_allowed(SESS_TLS_ACCEPT, SESS_STARTUP));
    CHECK("table: startup may authenticate the client", session_state_allowed(SESS_STARTUP, SESS_CLIENT_AUTH));
    CHECK("table: startup may connect (pass-through)", session_state_allowed(SESS_STARTUP, SESS_CONNECTING));
    CHECK("table: startup may wait for a cancel", session_state_allowed(SESS_STARTUP, SESS_CANCEL_WAIT));
    CHECK("table: client auth connects", session_state_allowed(SESS_CLIENT_AUTH, SESS_CONNECTING));
    CHECK("table: connecting logs in upstream", session_state_allowed(SESS_CONNECTING, SESS_UPSTREAM_LOGIN));
    CHECK("table: connecting relays auth", session_state_allowed(SESS_CONNECTING, SESS_AUTH));
    CHECK("table: upstream login relays auth", session_state_allowed(SESS_UPSTREAM_LOGIN, SESS_AUTH));
    CHECK("table: auth becomes ready", session_state_allowed(SESS_AUTH, SESS_READY));
    for (int st = 0; st < SESS_NSTATES; st++)
        CHECK("table: every state may close", session_state_allowed((enum session_state)st, SESS_CLOSING));
    for (int st = 0; st < SESS_CLOSING; st++)
        CHECK("table: nothing leaves closing", !session_state_allowed(SESS_CLOSING, (enum session_state)st));
    CHECK("table: ready never goes back to auth", !session_state_allowed(SESS_READY, SESS_AUTH));
    CHECK("table: ready never goes back to startup", !session_state_allowed(SESS_READY, SESS_STARTUP));
    CHECK("table: a cancel connection never becomes ready", !session_state_allowed(SESS_CANCEL_WAIT, SESS_READY));
    CHECK("table: startup cannot skip to ready", !session_state_allowed(SESS_STARTUP, SESS_READY));
    CHECK("table: client auth cannot skip the upstream", !session_state_allowed(SESS_CLIENT_AUTH, SESS_AUTH));
    CHECK("table: TLS cannot skip the startup packet", !session_state_allowed(SESS_TLS_ACCEPT, SESS_CONNECTING));
    CHECK("table: ready to ready is not a transition", !session_state_allowed(SESS_READY, SESS_READY));
    CHECK("table: out-of-range states are refused", !session_state_allowed((enum session_state)42, SESS_CLOSING) &&
                                                        !session_state_allowed(SESS_STARTUP, (enum session_state)-1));
    CHECK("names: every state has one", !strcmp(session_state_name(SESS_READY), "ready") &&
                                            !strcmp(session_state_name(SESS_CANCEL_WAIT), "cancel_wait") &&
                                            !strcmp(session_state_name((enum session_state)99), "invalid"));
}

/* Many sessions wander through allowed transitions (and busy flips while
 * ready); the counts always equal a recount. */
static void test_random_walk(void)
{
    enum { N = 64, STEPS = 20000 };
    struct session_counts c;
    memset(&c, 0, sizeof c);
    enum session_state st[N];
    int busy[N] = {0};
    for (int i = 0; i < N; i++) {
        st[i] = SESS_STARTUP;
        session_counts_enter(&c, SESS_STARTUP);
    }
    srand(7);
    int ok = 1, moves = 0, refused = 0;
    for (int step = 0; step < STEPS && ok; step++) {
        int i = rand() % N;
        if (st[i] == SESS_READY && rand() % 2) {
            busy[i] = !busy[i];
            session_counts_busy(&c, busy[i]);
        } else {
            enum session_state to = (enum session_state)(rand() % SESS_NSTATES);
            if (!session_state_allowed(st[i], to)) {
                refused++;
                continue;
            }
            if (busy[i] && to != SESS_READY) {
                busy[i] = 0;
                session_counts_busy(&c, 0);
            }
            session_counts_move(&c, st[i], to);
            st[i] = to;
            moves++;
            if (to == SESS_CLOSING && rand() % 2) { /* freed; a new one is accepted */
                session_counts_leave(&c, SESS_CLOSING);
                st[i] = SESS_STARTUP;
                session_counts_enter(&c, SESS_STARTUP);
            }
        }
        uint32_t in_state[SESS_NSTATES] = {0}, b = 0;
        for (int j = 0; j < N; j++) {
            in_state[st[j]]++;
            b += (uint32_t)busy[j];
        }
        ok = b == c.busy && session_counts_total(&c) == N && !memcmp(in_state, c.in_state, sizeof in_state);
    }
    CHECK("walk: counts equal a recount after every step", ok);
    CHECK("walk: the walk moved and was refused", moves > 1000 && refused > 1000);
}

static struct session *fake_session(struct relay *relay, uint64_t id)
{
    struct session *s = calloc(1, sizeof *s + sizeof "test");
    s->relay = relay;
    s->id = id;
    tracker_init(&s->tracker);
    strcpy(s->addr, "test");
    s->next = relay->sessions;
    if (relay->sessions)
        relay->sessions->prev = s;
    relay->sessions = s;
    session_counts_enter(&relay->counts, SESS_STARTUP);
    return s;
}

/* session_set_state on real structs: the server's counts follow, and the
 * busy count follows the tracker once ready. */
static void test_set_state(void)
{
    struct relay relay;
    memset(&relay, 0, sizeof relay);
    config_init(&relay.cfg);
    relay.base = event_base_new();
    struct session *a = fake_session(&relay, 1), *b = fake_session(&relay, 2);
    static const enum session_state path[] = {SESS_CONNECTING, SESS_AUTH, SESS_READY};
    for (size_t i = 0; i < sizeof path / sizeof path[0]; i++)
        session_set_state(a, path[i]);
    CHECK("set_state: a is ready", a->state == SESS_READY && relay.counts.in_state[SESS_READY] == 1);
    CHECK("set_state: b is still starting", relay.counts.in_state[SESS_STARTUP] == 1);
    CHECK("set_state: a ready session at a boundary is not busy", relay.counts.busy == 0 && !a->busy);
    session_set_state(b, SESS_CLOSING);
    session_set_state(b, SESS_CLOSING);
    CHECK("set_state: closing twice counts once", relay.counts.in_state[SESS_CLOSING] == 1 &&
                                                      session_counts_total(&relay.counts) == 2);
#ifndef PGT_DEBUG
    /* Release builds: a forbidden move is logged and closes that session. */
    session_set_state(a, SESS_STARTUP);
    CHECK("set_state: a forbidden move closes the session", a->state == SESS_CLOSING);
    event_base_loop(relay.base, EVLOOP_NONBLOCK);
    CHECK("set_state: ...and only that one is freed", relay_session_count(&relay) == 1 && relay.sessions == b &&
                                                          relay.counts.in_state[SESS_CLOSING] == 1 &&
                                                          session_counts_total(&relay.counts) == 1);
#else
    session_free(a);
#endif
    session_free(b);
    CHECK("set_state: every count is back to zero", session_counts_total(&relay.counts) == 0 && relay.counts.busy == 0);
    event_base_free(relay.base);
    config_free(&relay.cfg);
}

int main(void)
{
    test_table();
    test_random_walk();
    test_set_state();
    return UNIT_RESULT();
}

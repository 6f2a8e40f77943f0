/* The session state machine's table and per-state counts (see
 * session_state.h). A transition not in the table is a bug in the relay,
 * never the client's doing: the caller decides what to do about it. */
#include "session_state.h"

#include <assert.h>
#include <stddef.h>

#define T(st) (1u << (st))

/* allowed[from]: the states `from` may move to. */
static const uint32_t allowed[SESS_NSTATES] = {
    [SESS_STARTUP] = T(SESS_TLS_ACCEPT) | T(SESS_CLIENT_AUTH) | T(SESS_CONNECTING) | T(SESS_CANCEL_WAIT) |
                     T(SESS_CLOSING),
    [SESS_TLS_ACCEPT] = T(SESS_STARTUP) | T(SESS_CLOSING),
    /* -> READY: transaction pooling, where the proxy says what a login says */
    [SESS_CLIENT_AUTH] = T(SESS_CONNECTING) | T(SESS_READY) | T(SESS_CLOSING),
    [SESS_CONNECTING] = T(SESS_UPSTREAM_LOGIN) | T(SESS_AUTH) | T(SESS_READY) | T(SESS_CLOSING),
    [SESS_UPSTREAM_LOGIN] = T(SESS_AUTH) | T(SESS_CLOSING),
    [SESS_AUTH] = T(SESS_READY) | T(SESS_CLOSING),
    [SESS_READY] = T(SESS_CLOSING),
    [SESS_CANCEL_WAIT] = T(SESS_CLOSING),
    [SESS_CLOSING] = T(SESS_CLOSING),
};

int session_state_valid(int st)
{
    return st >= 0 && st < SESS_NSTATES;
}

int session_state_allowed(enum session_state from, enum session_state to)
{
    if (!session_state_valid((int)from) || !session_state_valid((int)to))
        return 0;
    return (allowed[from] & T(to)) != 0;
}

const char *session_state_name(enum session_state st)
{
    static const char *const names[SESS_NSTATES] = {"startup", "tls", "client_auth", "connecting", "upstream_login",
                                                    "auth", "ready", "cancel_wait", "closing"};
    return session_state_valid((int)st) ? names[st] : "invalid";
}

void session_counts_enter(struct session_counts *c, enum session_state st)
{
    assert(c && session_state_valid((int)st));
    c->in_state[st]++;
}

void session_counts_leave(struct session_counts *c, enum session_state st)
{
    assert(c && session_state_valid((int)st) && c->in_state[st] > 0);
    c->in_state[st]--;
}

void session_counts_move(struct session_counts *c, enum session_state from, enum session_state to)
{
    if (from == to)
        return;
    session_counts_leave(c, from);
    session_counts_enter(c, to);
}

void session_counts_busy(struct session_counts *c, int now_busy)
{
    assert(c);
    if (now_busy) {
        c->busy++;
    } else {
        assert(c->busy > 0);
        c->busy--;
    }
}

uint32_t session_counts_total(const struct session_counts *c)
{
    uint32_t n = 0;
    for (size_t i = 0; i < SESS_NSTATES; i++)
        n += c->in_state[i];
    return n;
}

/* The session state machine on its own: the states, the transitions a
 * session may make, and per-state counts kept by whoever moves sessions.
 * Pure (no I/O, no relay), so the table is tested on its own; session.c
 * moves every session through session_set_state, which checks it. */
#ifndef PGTANDEM_SESSION_STATE_H
#define PGTANDEM_SESSION_STATE_H

#include <stdint.h>

enum session_state {
    SESS_STARTUP = 0,        /* reading SSLRequest / StartupMessage / CancelRequest */
    SESS_TLS_ACCEPT = 1,     /* 'S' sent; switch to TLS once it is flushed */
    SESS_CLIENT_AUTH = 2,    /* auth "scram": the proxy authenticates the client */
    SESS_CONNECTING = 3,     /* opening the upstream connection */
    SESS_UPSTREAM_LOGIN = 4, /* auth "scram": the proxy logs in upstream */
    SESS_AUTH = 5,           /* relaying authentication (then ParameterStatus...) */
    SESS_READY = 6,          /* relaying queries */
    SESS_CANCEL_WAIT = 7,    /* a CancelRequest went on: closes once it is answered */
    SESS_CLOSING = 8,        /* flushing a last message to the client, then freed */
    SESS_NSTATES = 9
};

/* 1 when a session in `from` may move to `to`. Every state may close;
 * closing again is allowed (the first reason wins) and changes nothing;
 * nothing leaves SESS_CLOSING. */
int session_state_allowed(enum session_state from, enum session_state to);
/* 1 for a value of the enum (a corrupted state is a bug). */
int session_state_valid(int st);
const char *session_state_name(enum session_state st);

/* How many sessions are in each state, and how many are ready and inside a
 * transaction or request (not at a boundary): what the pause drain asks. */
struct session_counts {
    uint32_t in_state[SESS_NSTATES];
    uint32_t busy;
};

void session_counts_enter(struct session_counts *c, enum session_state st);
void session_counts_leave(struct session_counts *c, enum session_state st);
void session_counts_move(struct session_counts *c, enum session_state from, enum session_state to);
/* A session's busy flag changed (0 -> 1 or 1 -> 0). */
void session_counts_busy(struct session_counts *c, int now_busy);
uint32_t session_counts_total(const struct session_counts *c);

#endif

/* A pooled server connection's states on their own: the states, the moves
 * a server may make between them, and per-state counts kept on its pool.
 * Pure (no I/O, no pool), so the table is tested on its own; pool.c moves
 * every server through pool_server_set_state, which checks it and keeps
 * the counts, so the pool's idle, lent and login numbers are never kept by
 * hand (as PgBouncer's change_server_state keeps its per-state lists). */
#ifndef PGTANDEM_POOL_SERVER_STATE_H
#define PGTANDEM_POOL_SERVER_STATE_H

#include <stdint.h>

enum pool_server_state {
    PSRV_CONNECTING = 0, /* TCP, TLS */
    PSRV_LOGIN = 1,      /* startup and authentication */
    PSRV_IDLE = 2,       /* in the pool, between transactions */
    PSRV_LENT = 3,       /* driven by a session */
    PSRV_CANCELLING = 4, /* given back while a cancel for it is on its way: idle again once it arrived */
    PSRV_NSTATES = 5
};

/* 1 when a server in `from` may move to `to`. A server enters its pool
 * connecting and may leave it (closed) from any state: those are not moves
 * but pool_server_counts_enter and _leave. Staying put is not a move. */
int pool_server_state_allowed(enum pool_server_state from, enum pool_server_state to);
/* 1 for a value of the enum (a corrupted state is a bug). */
int pool_server_state_valid(int st);
/* The state's word in logs, metrics and /pools ("active" for lent). */
const char *pool_server_state_name(enum pool_server_state st);

/* How many servers of a pool are in each state. */
struct pool_server_counts {
    uint32_t in_state[PSRV_NSTATES];
};

void pool_server_counts_enter(struct pool_server_counts *c, enum pool_server_state st);
void pool_server_counts_leave(struct pool_server_counts *c, enum pool_server_state st);
void pool_server_counts_move(struct pool_server_counts *c, enum pool_server_state from, enum pool_server_state to);
/* Every server of the pool, whatever its state. */
uint32_t pool_server_counts_total(const struct pool_server_counts *c);
/* Connecting or logging in: the logins on their way. */
uint32_t pool_server_counts_logging_in(const struct pool_server_counts *c);

#endif

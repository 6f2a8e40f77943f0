/* The pooled server's state table and per-state counts (see
 * pool_server_state.h). A move not in the table is a bug in the pool,
 * never the server's doing: the caller decides what to do about it. */
#include "pool_server_state.h"

#include <assert.h>
#include <stddef.h>

#define T(st) (1u << (st))

/* allowed[from]: the states `from` may move to. */
static const uint32_t allowed[PSRV_NSTATES] = {
    [PSRV_CONNECTING] = T(PSRV_LOGIN),
    [PSRV_LOGIN] = T(PSRV_IDLE),
    [PSRV_IDLE] = T(PSRV_LENT),
    /* -> CANCELLING: given back while a cancel is on its way, so the
     * signal cannot reach the next borrower's query */
    [PSRV_LENT] = T(PSRV_IDLE) | T(PSRV_CANCELLING),
    [PSRV_CANCELLING] = T(PSRV_IDLE),
};

int pool_server_state_valid(int st)
{
    return st >= 0 && st < PSRV_NSTATES;
}

int pool_server_state_allowed(enum pool_server_state from, enum pool_server_state to)
{
    if (!pool_server_state_valid((int)from) || !pool_server_state_valid((int)to))
        return 0;
    return (allowed[from] & T(to)) != 0;
}

const char *pool_server_state_name(enum pool_server_state st)
{
    static const char *const names[PSRV_NSTATES] = {"connecting", "login", "idle", "active", "cancelling"};
    return pool_server_state_valid((int)st) ? names[st] : "invalid";
}

void pool_server_counts_enter(struct pool_server_counts *c, enum pool_server_state st)
{
    assert(c && pool_server_state_valid((int)st));
    c->in_state[st]++;
}

void pool_server_counts_leave(struct pool_server_counts *c, enum pool_server_state st)
{
    assert(c && pool_server_state_valid((int)st) && c->in_state[st] > 0);
    c->in_state[st]--;
}

void pool_server_counts_move(struct pool_server_counts *c, enum pool_server_state from, enum pool_server_state to)
{
    if (from == to)
        return;
    pool_server_counts_leave(c, from);
    pool_server_counts_enter(c, to);
}

uint32_t pool_server_counts_total(const struct pool_server_counts *c)
{
    uint32_t n = 0;
    for (size_t i = 0; i < PSRV_NSTATES; i++)
        n += c->in_state[i];
    return n;
}

uint32_t pool_server_counts_logging_in(const struct pool_server_counts *c)
{
    return c->in_state[PSRV_CONNECTING] + c->in_state[PSRV_LOGIN];
}

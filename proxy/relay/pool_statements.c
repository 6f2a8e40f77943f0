/* The clients' named statements a pool server has prepared (see pool.h):
 * the pool's names for them, and each server's cache of them, least
 * recently bound first out. statement_map.c decides when to prepare. */
#include "pool.h"

#include <event2/buffer.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

void pool_statement_name(char out[24], uint64_t hash)
{
    snprintf(out, 24, "pgt_%016" PRIx64, hash);
}

void pool_write_close_statement(struct evbuffer *out, uint64_t hash)
{
    char name[24];
    pool_statement_name(name, hash);
    uint8_t head[6] = {'C', 0, 0, 0, 0, 'S'};
    proto_put_u32(head + 1, (uint32_t)(4 + 1 + strlen(name) + 1));
    evbuffer_add(out, head, sizeof head);
    evbuffer_add(out, name, strlen(name) + 1);
}

static int statement_index(const struct pool_server *ps, uint64_t hash)
{
    for (uint32_t i = 0; i < ps->nstmts; i++)
        if (ps->stmts[i] == hash)
            return (int)i;
    return -1;
}

static void remove_statement(struct pool_server *ps, uint32_t i)
{
    ps->nstmts--;
    ps->stmts[i] = ps->stmts[ps->nstmts];
    ps->stmt_used[i] = ps->stmt_used[ps->nstmts];
}

int pool_server_has_statement(struct pool_server *ps, uint64_t hash)
{
    int i = statement_index(ps, hash);
    if (i >= 0)
        ps->stmt_used[i] = ++ps->stmt_clock;
    return i >= 0;
}

int pool_server_add_statement(struct pool_server *ps, uint64_t hash, uint64_t *evicted)
{
    uint32_t cap = (uint32_t)ps->pool->relay->cfg.max_prepared_statements;
    *evicted = 0;
    if (!ps->stmts) {
        ps->stmts = calloc(cap, sizeof *ps->stmts);
        ps->stmt_used = calloc(cap, sizeof *ps->stmt_used);
        if (!ps->stmts || !ps->stmt_used) {
            free(ps->stmts);
            free(ps->stmt_used);
            ps->stmts = NULL;
            ps->stmt_used = NULL;
            return -1;
        }
    }
    if (ps->nstmts == cap) {
        uint32_t oldest = 0;
        for (uint32_t i = 1; i < ps->nstmts; i++)
            if (ps->stmt_used[i] < ps->stmt_used[oldest])
                oldest = i;
        *evicted = ps->stmts[oldest];
        remove_statement(ps, oldest);
    }
    ps->stmts[ps->nstmts] = hash;
    ps->stmt_used[ps->nstmts++] = ++ps->stmt_clock;
    return 0;
}

void pool_server_forget_statement(struct pool_server *ps, uint64_t hash)
{
    int i = statement_index(ps, hash);
    if (i >= 0)
        remove_statement(ps, (uint32_t)i);
}

void pool_server_lost_statements(struct pool_server *ps)
{
    ps->nstmts = 0;
}

int pool_server_close_statements(struct pool_server *ps, struct evbuffer *out)
{
    if (!ps->nstmts)
        return 0;
    for (uint32_t i = 0; i < ps->nstmts; i++)
        pool_write_close_statement(out, ps->stmts[i]);
    uint8_t sync[5] = {'S', 0, 0, 0, 4};
    evbuffer_add(out, sync, sizeof sync);
    ps->nstmts = 0;
    return 1;
}

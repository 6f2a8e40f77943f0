/* Named statements under transaction pooling (see statement_map.h): the
 * rewrite of Parse, Bind, Describe and Close, and each server's cache of
 * the statements prepared on it. */
#include "statement_map.h"

#include <event2/buffer.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"
#include "prepared.h"
#include "reply_queue.h"
#include "sbuf.h"
#include "session.h"

#define MAX_NAMES_PREFIX 4096u /* portal and statement names of a Bind: NAMEDATALEN is 64 */

/* ---- the server's cache ---- */

static int cache_find(const struct pool_server *ps, uint64_t hash)
{
    for (uint32_t i = 0; i < ps->nstmts; i++)
        if (ps->stmts[i] == hash)
            return (int)i;
    return -1;
}

static void cache_remove_at(struct pool_server *ps, uint32_t i)
{
    ps->nstmts--;
    ps->stmts[i] = ps->stmts[ps->nstmts];
    ps->stmt_used[i] = ps->stmt_used[ps->nstmts];
}

/* Room for one more: the least recently bound statement's slot (its
 * hash in *evicted, to be closed on the server), or -1 out of memory. */
static int cache_make_room(struct pool_server *ps, uint32_t cap, uint64_t *evicted)
{
    *evicted = 0;
    if (!ps->stmts) {
        ps->stmts = calloc(cap, sizeof *ps->stmts);
        ps->stmt_used = calloc(cap, sizeof *ps->stmt_used);
        if (!ps->stmts || !ps->stmt_used) {
            stmt_cache_free(ps);
            return -1;
        }
    }
    if (ps->nstmts < cap)
        return 0;
    uint32_t oldest = 0;
    for (uint32_t i = 1; i < ps->nstmts; i++)
        if (ps->stmt_used[i] < ps->stmt_used[oldest])
            oldest = i;
    *evicted = ps->stmts[oldest];
    cache_remove_at(ps, oldest);
    return 0;
}

void stmt_cache_free(struct pool_server *ps)
{
    free(ps->stmts);
    free(ps->stmt_used);
    ps->stmts = NULL;
    ps->stmt_used = NULL;
    ps->nstmts = 0;
}

static void server_name(char out[24], uint64_t hash)
{
    snprintf(out, 24, "pgt_%016" PRIx64, hash);
}

static void write_close(struct evbuffer *out, uint64_t hash)
{
    char name[24];
    server_name(name, hash);
    uint8_t head[6] = {'C', 0, 0, 0, 0, 'S'};
    proto_put_u32(head + 1, (uint32_t)(4 + 1 + strlen(name) + 1));
    evbuffer_add(out, head, sizeof head);
    evbuffer_add(out, name, strlen(name) + 1);
}

int stmt_cache_write_close_all(struct pool_server *ps, struct evbuffer *out)
{
    if (!ps->nstmts)
        return 0;
    for (uint32_t i = 0; i < ps->nstmts; i++)
        write_close(out, ps->stmts[i]);
    uint8_t sync[5] = {'S', 0, 0, 0, 4};
    evbuffer_add(out, sync, sizeof sync);
    ps->nstmts = 0;
    return 1;
}

/* ---- statements ---- */

/* FNV-1a over the query and parameter types (never 0: 0 means none). */
static uint64_t statement_hash(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h ? h : 1;
}

/* The part of a remembered Parse after its name: query, parameter types. */
static const uint8_t *parse_rest(const struct prepared *p, size_t *len)
{
    size_t name_len = strlen(p->name) + 1;
    *len = p->len - PROTO_HEADER_LEN - name_len;
    return p->parse + PROTO_HEADER_LEN + name_len;
}

static uint64_t hash_of(const struct prepared *p)
{
    size_t len;
    const uint8_t *rest = parse_rest(p, &len);
    return statement_hash(rest, len);
}

static int push(struct session *s, uint8_t kind, enum reply_action action, uint64_t hash)
{
    int r = reply_queue_push(&s->replies, kind, action, hash);
    if (r < 0)
        session_fail(s, SQLSTATE_CONNECTION_FAILURE, "out of memory");
    return r;
}

/* Makes sure the lent server has the statement (a Close of the one it
 * evicts, its reply dropped, and a Parse whose reply gets `action`, when
 * it does not), and names it in `name`. 0, or -1 when the session failed. */
static int ensure_on_server(struct session *s, const struct prepared *p, char name[24], enum reply_action action)
{
    struct pool_server *ps = s->lent;
    uint64_t hash = hash_of(p);
    server_name(name, hash);
    int i = cache_find(ps, hash);
    if (i >= 0) {
        ps->stmt_used[i] = ++ps->pool->stmt_hits + ps->pool->stmt_misses;
        return 0;
    }
    uint64_t evicted;
    if (cache_make_room(ps, (uint32_t)s->srv->cfg.max_prepared_statements, &evicted) != 0) {
        session_fail(s, SQLSTATE_CONNECTION_FAILURE, "out of memory");
        return -1;
    }
    struct evbuffer *out = s->server->out;
    if (evicted) {
        write_close(out, evicted);
        if (push(s, 'C', REPLY_DROP, 0) < 0)
            return -1;
    }
    size_t rest_len;
    const uint8_t *rest = parse_rest(p, &rest_len);
    uint8_t head[5] = {'P'};
    proto_put_u32(head + 1, (uint32_t)(4 + strlen(name) + 1 + rest_len));
    evbuffer_add(out, head, sizeof head);
    evbuffer_add(out, name, strlen(name) + 1);
    evbuffer_add(out, rest, rest_len);
    if (push(s, 'P', action, hash) < 0)
        return -1;
    ps->stmts[ps->nstmts] = hash;
    ps->stmt_used[ps->nstmts++] = ps->pool->stmt_hits + ++ps->pool->stmt_misses;
    return 0;
}

/* A named Parse: remembered, and prepared on the server only if it does
 * not have that statement yet (else answered by the proxy). */
static enum stmt_map_result map_parse(struct session *s, struct evbuffer *in, uint32_t total)
{
    const uint8_t *msg = evbuffer_pullup(in, total);
    if (prepared_remember(&s->prepared, msg, total) != 0) {
        session_fail(s, SQLSTATE_CONNECTION_FAILURE, "out of memory");
        return STMT_FAILED;
    }
    const struct prepared *p = s->prepared;
    uint64_t hash = hash_of(p);
    evbuffer_drain(in, total);
    if (cache_find(s->lent, hash) >= 0)
        return push(s, 'P', REPLY_SYNTH, 0) < 0 ? STMT_FAILED : STMT_CONSUMED;
    char name[24];
    /* prepared now, under its server name, as the client's own Parse: its
     * ParseComplete (or error) is the client's */
    return ensure_on_server(s, p, name, REPLY_PASS) != 0 ? STMT_FAILED : STMT_CONSUMED;
}

/* The statement name of a Bind (after the portal's) or a Describe/Close
 * 'S' (after the kind byte): where it starts and how long the prefix up to
 * its end is; -1 while not buffered, -2 when malformed. */
static int name_span(struct evbuffer *in, size_t avail, uint32_t total, size_t start, int skip_portal,
                     size_t *name_at, size_t *prefix_len)
{
    size_t have = total < MAX_NAMES_PREFIX ? total : MAX_NAMES_PREFIX;
    if (avail < have)
        return -1;
    const uint8_t *p = evbuffer_pullup(in, (ssize_t)have);
    size_t at = start;
    if (skip_portal) {
        const uint8_t *end = memchr(p + at, '\0', have - at);
        if (!end)
            return -2;
        at = (size_t)(end - p) + 1;
    }
    const uint8_t *end = at < have ? memchr(p + at, '\0', have - at) : NULL;
    if (!end)
        return -2;
    *name_at = at;
    *prefix_len = (size_t)(end - p) + 1;
    return 0;
}

/* Bind or Describe 'S' of a named statement: the server's name in place of
 * the client's, the statement prepared there first if need be. */
static enum stmt_map_result map_use(struct session *s, struct evbuffer *in, const struct msg_header *h, size_t avail,
                                    uint8_t kind)
{
    uint32_t total = h->length + 1;
    size_t name_at, prefix_len;
    int r = name_span(in, avail, total, PROTO_HEADER_LEN + (h->type == 'D'), h->type == 'B', &name_at, &prefix_len);
    if (r == -1)
        return STMT_NEED_MORE;
    if (r == -2) {
        session_fail(s, SQLSTATE_PROTOCOL_VIOLATION, "malformed %s message", h->type == 'B' ? "Bind" : "Describe");
        return STMT_FAILED;
    }
    const char *client_name = (const char *)evbuffer_pullup(in, (ssize_t)prefix_len) + name_at;
    struct prepared *p = *client_name ? prepared_find(&s->prepared, client_name) : NULL;
    if (!p) /* unnamed, or unknown: Postgres answers as it would */
        return push(s, kind, REPLY_PASS, 0) < 0 ? STMT_FAILED : STMT_STREAM;
    char name[24];
    if (ensure_on_server(s, p, name, REPLY_DROP) != 0)
        return STMT_FAILED;
    size_t old_name_len = prefix_len - name_at; /* with its NUL */
    size_t new_len = total - old_name_len + strlen(name) + 1;
    uint8_t *prefix = malloc(name_at);
    if (!prefix) {
        session_fail(s, SQLSTATE_CONNECTION_FAILURE, "out of memory");
        return STMT_FAILED;
    }
    evbuffer_remove(in, prefix, name_at);
    evbuffer_drain(in, old_name_len);
    proto_put_u32(prefix + 1, (uint32_t)(new_len - 1));
    struct evbuffer *out = s->server->out;
    evbuffer_add(out, prefix, name_at);
    evbuffer_add(out, name, strlen(name) + 1);
    free(prefix);
    if (push(s, kind, REPLY_PASS, 0) < 0)
        return STMT_FAILED;
    s->c2s_remaining = (uint32_t)(total - prefix_len);
    return s->c2s_remaining ? STMT_STREAM_REST : STMT_CONSUMED;
}

/* Close 'S' of a named statement: forgotten, answered by the proxy (the
 * server keeps it for the other clients that prepare the same). */
static enum stmt_map_result map_close(struct session *s, struct evbuffer *in, const struct msg_header *h,
                                      size_t avail)
{
    uint32_t total = h->length + 1;
    if (total > PREPARED_MAX_MESSAGE)
        return push(s, 'C', REPLY_PASS, 0) < 0 ? STMT_FAILED : STMT_STREAM;
    if (avail < total)
        return STMT_NEED_MORE;
    const uint8_t *msg = evbuffer_pullup(in, total);
    if (total < PROTO_HEADER_LEN + 2 || msg[PROTO_HEADER_LEN] != 'S' || msg[PROTO_HEADER_LEN + 1] == '\0')
        return push(s, 'C', REPLY_PASS, 0) < 0 ? STMT_FAILED : STMT_STREAM;
    prepared_forget_closed(&s->prepared, msg, total);
    evbuffer_drain(in, total);
    return push(s, 'C', REPLY_SYNTH, 0) < 0 ? STMT_FAILED : STMT_CONSUMED;
}

enum stmt_map_result stmt_map_client_message(struct session *s, struct evbuffer *in, const struct msg_header *h,
                                             size_t avail)
{
    uint32_t total = h->length + 1;
    switch (h->type) {
    case 'P': {
        if (avail < PROTO_HEADER_LEN + 1)
            return STMT_NEED_MORE;
        uint8_t first[PROTO_HEADER_LEN + 1];
        evbuffer_copyout(in, first, sizeof first);
        if (first[PROTO_HEADER_LEN] == '\0' || total > PREPARED_MAX_MESSAGE) /* unnamed (or too large to keep) */
            return push(s, 'P', REPLY_PASS, 0) < 0 ? STMT_FAILED : STMT_STREAM;
        if (avail < total)
            return STMT_NEED_MORE;
        return map_parse(s, in, total);
    }
    case 'B':
        return map_use(s, in, h, avail, 'B');
    case 'D': {
        if (avail < PROTO_HEADER_LEN + 1)
            return STMT_NEED_MORE;
        uint8_t first[PROTO_HEADER_LEN + 1];
        evbuffer_copyout(in, first, sizeof first);
        if (first[PROTO_HEADER_LEN] != 'S')
            return push(s, 'D', REPLY_PASS, 0) < 0 ? STMT_FAILED : STMT_STREAM;
        return map_use(s, in, h, avail, 'd');
    }
    case 'C':
        return map_close(s, in, h, avail);
    case 'E': case 'S': case 'Q': case 'F':
        return push(s, h->type, REPLY_PASS, 0) < 0 ? STMT_FAILED : STMT_STREAM;
    default: /* Flush, COPY data, Terminate: no reply of their own */
        return STMT_STREAM;
    }
}

int stmt_map_server_message(struct session *s, uint8_t type)
{
    struct reply_step step = reply_queue_on_server(&s->replies, type);
    if (step.failed_hash && s->lent) {
        int i = cache_find(s->lent, step.failed_hash);
        if (i >= 0)
            cache_remove_at(s->lent, (uint32_t)i);
    }
    return step.drop;
}

void stmt_map_answer_due(struct session *s)
{
    uint8_t reply;
    int any = 0;
    while ((reply = reply_queue_take_synth(&s->replies))) {
        uint8_t msg[5] = {reply, 0, 0, 0, 4};
        evbuffer_add(s->client->out, msg, sizeof msg);
        any = 1;
    }
    if (any)
        sbuf_flush(s->client);
}

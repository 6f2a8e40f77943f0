/* Named statements under transaction pooling (see statement_map.h): the
 * rewrite of Parse, Bind, Describe and Close. Which statements a server
 * has prepared is the pool's (pool.h). */
#include "statement_map.h"

#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"
#include "prepared.h"
#include "reply_queue.h"
#include "sbuf.h"

#define MAX_NAMES_PREFIX 4096u /* portal and statement names of a Bind: NAMEDATALEN is 64 */

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

/* Hashed once: a Bind of it runs through here for every execution, and
 * its text (up to PREPARED_MAX_MESSAGE) never changes once remembered. */
static uint64_t hash_of(struct prepared *p)
{
    if (!p->hash) {
        size_t len;
        const uint8_t *rest = parse_rest(p, &len);
        p->hash = statement_hash(rest, len);
    }
    return p->hash;
}

static enum stmt_map_result out_of_memory(struct stmt_map *m)
{
    m->sqlstate = SQLSTATE_CONNECTION_FAILURE;
    m->error = "out of memory";
    return STMT_FAILED;
}

static int push(struct stmt_map *m, uint8_t kind, enum reply_action action, uint64_t hash)
{
    int r = reply_queue_push(m->replies, kind, action, hash);
    if (r < 0)
        out_of_memory(m);
    return r;
}

/* A message passed through as it is: its reply is the client's. */
static enum stmt_map_result stream(struct stmt_map *m, uint8_t kind)
{
    return push(m, kind, REPLY_PASS, 0) < 0 ? STMT_FAILED : STMT_STREAM;
}

/* Prepares the statement the lent server does not have yet, as `name`:
 * a Close of the one it evicts (reply dropped), then a Parse whose reply
 * gets `action`. 0, or -1 (STMT_FAILED's message set). */
static int prepare_on_server(struct stmt_map *m, const struct prepared *p, uint64_t hash, const char *name,
                             enum reply_action action)
{
    struct pool_server *ps = m->server;
    uint64_t evicted;
    if (pool_server_add_statement(ps, hash, &evicted) != 0) {
        out_of_memory(m);
        return -1;
    }
    ps->pool->stmt_misses++;
    struct evbuffer *out = ps->sb->out;
    if (evicted) {
        pool_write_close_statement(out, evicted);
        if (push(m, 'C', REPLY_DROP, 0) < 0)
            return -1;
    }
    size_t rest_len, name_len = strlen(name) + 1;
    const uint8_t *rest = parse_rest(p, &rest_len);
    uint8_t head[PROTO_HEADER_LEN] = {'P'};
    proto_put_u32(head + 1, (uint32_t)(4 + name_len + rest_len));
    evbuffer_add(out, head, sizeof head);
    evbuffer_add(out, name, name_len);
    evbuffer_add(out, rest, rest_len);
    return push(m, 'P', action, hash) < 0 ? -1 : 0;
}

/* Makes sure the lent server has the statement and names it in `name`. */
static int ensure_on_server(struct stmt_map *m, struct prepared *p, char name[24], enum reply_action action)
{
    uint64_t hash = hash_of(p);
    pool_statement_name(name, hash);
    if (pool_server_has_statement(m->server, hash)) {
        m->server->pool->stmt_hits++;
        return 0;
    }
    return prepare_on_server(m, p, hash, name, action);
}

/* ---- the unnamed statement ---- */

void unnamed_statement_forget(struct unnamed_statement *u)
{
    u->len = 0;
}

void unnamed_statement_free(struct unnamed_statement *u)
{
    free(u->parse);
    memset(u, 0, sizeof *u);
}

/* The client's Parse "": kept (whole: it is at most PREPARED_MAX_MESSAGE)
 * and passed through; the server it runs on has it from then on. One the
 * server skips (after an error, before the Sync) changes nothing. On the
 * path of every parameterized query: the buffer grows, it is not renewed. */
static enum stmt_map_result map_unnamed_parse(struct stmt_map *m, struct evbuffer *in, uint32_t total)
{
    struct unnamed_statement *u = m->unnamed;
    if (total > u->cap) { /* before the push: out of memory must change nothing */
        uint8_t *bigger = realloc(u->parse, total);
        if (!bigger)
            return out_of_memory(m);
        u->parse = bigger;
        u->cap = total;
    }
    int queued = push(m, 'p', REPLY_PASS, 0);
    if (queued <= 0)
        return queued < 0 ? STMT_FAILED : STMT_STREAM;
    evbuffer_copyout(in, u->parse, total);
    u->len = total;
    u->on_server = 1;
    u->effect = STMT_EFFECT_UNKNOWN;
    return STMT_STREAM;
}

/* Before a Bind or Describe of the unnamed statement on a server that does
 * not have the client's: its Parse again, or a Close of the server's (a
 * previous borrower's) when the client has none. Replies dropped. */
static int unnamed_to_server(struct stmt_map *m)
{
    struct unnamed_statement *u = m->unnamed;
    if (u->on_server)
        return 0;
    static const uint8_t close_unnamed[] = {'C', 0, 0, 0, 6, 'S', '\0'};
    int queued = u->len ? push(m, 'p', REPLY_DROP, 0) : push(m, 'C', REPLY_DROP, 0);
    if (queued <= 0) /* skipped by the server, as the client's message will be */
        return queued;
    if (u->len)
        evbuffer_add(m->server->sb->out, u->parse, u->len);
    else
        evbuffer_add(m->server->sb->out, close_unnamed, sizeof close_unnamed);
    u->on_server = 1;
    return 0;
}

/* A simple Query (Postgres runs it as the unnamed statement) or a Close of
 * the unnamed statement: passed through, and the statement is gone on the
 * server it runs on, as it is for the client. */
static enum stmt_map_result stream_dropping_unnamed(struct stmt_map *m, uint8_t kind)
{
    int queued = push(m, kind, REPLY_PASS, 0);
    if (queued < 0)
        return STMT_FAILED;
    if (queued) {
        unnamed_statement_forget(m->unnamed);
        m->unnamed->on_server = 1;
    }
    return STMT_STREAM;
}

/* A Parse of a name the client has not closed: Postgres refuses it with
 * 42P05 and keeps the statement it has. The server is made to fail in its
 * place, by a Describe of a statement no connection has (no side effect),
 * so that it skips to the Sync and aborts a transaction block as Postgres
 * would; its error is replaced by the one the client would hear. */
static enum stmt_map_result refuse_duplicate(struct stmt_map *m, struct evbuffer *in, uint32_t total,
                                             const char *name)
{
    static const uint8_t describe_missing[] = {'D', 0, 0, 0, 14, 'S', 'p', 'g', 't', '_', 'n', 'o', 'n', 'e', '\0'};
    size_t name_len = strlen(name), text_len = name_len + 48, cap = text_len + 64;
    char *text = malloc(text_len);
    uint8_t *error = malloc(cap);
    size_t n = 0;
    if (text && error) {
        snprintf(text, text_len, "prepared statement \"%s\" already exists", name);
        n = proto_format_error(error, cap, "ERROR", SQLSTATE_DUPLICATE_PSTATEMENT, text);
    }
    free(text);
    if (!n) {
        free(error);
        return out_of_memory(m);
    }
    int queued = reply_queue_push_failure(m->replies, 'd', error);
    if (queued < 0)
        return out_of_memory(m);
    evbuffer_drain(in, total);
    if (queued) /* else skipped, as the client's Parse is, after an earlier error */
        evbuffer_add(m->server->sb->out, describe_missing, sizeof describe_missing);
    return STMT_CONSUMED;
}

/* A named Parse: remembered, and prepared on the server only if it does
 * not have that statement yet (else answered by the proxy). */
static enum stmt_map_result map_parse(struct stmt_map *m, struct evbuffer *in, uint32_t total)
{
    const uint8_t *msg = evbuffer_pullup(in, total);
    const char *client_name = (const char *)msg + PROTO_HEADER_LEN;
    if (memchr(client_name, '\0', total - PROTO_HEADER_LEN) && prepared_find(m->registry, client_name))
        return refuse_duplicate(m, in, total, client_name);
    if (prepared_remember(m->registry, msg, total) != 0)
        return out_of_memory(m);
    struct prepared *p = *m->registry;
    evbuffer_drain(in, total);
    uint64_t hash = hash_of(p);
    if (pool_server_has_statement(m->server, hash))
        return push(m, 'P', REPLY_SYNTH, 0) < 0 ? STMT_FAILED : STMT_CONSUMED;
    char name[24];
    pool_statement_name(name, hash);
    /* prepared now, under its server name, as the client's own Parse: its
     * ParseComplete (or error) is the client's */
    return prepare_on_server(m, p, hash, name, REPLY_PASS) != 0 ? STMT_FAILED : STMT_CONSUMED;
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
static enum stmt_map_result map_use(struct stmt_map *m, struct evbuffer *in, const struct msg_header *h,
                                    size_t avail, uint8_t kind)
{
    uint32_t total = h->length + 1;
    size_t name_at, prefix_len;
    int r = name_span(in, avail, total, PROTO_HEADER_LEN + (h->type == 'D'), h->type == 'B', &name_at, &prefix_len);
    if (r == -1)
        return STMT_NEED_MORE;
    if (r == -2) {
        m->sqlstate = SQLSTATE_PROTOCOL_VIOLATION;
        m->error = h->type == 'B' ? "malformed Bind message" : "malformed Describe message";
        return STMT_FAILED;
    }
    /* contiguous from here on: neither the registry nor the server's
     * output touches `in` */
    const uint8_t *msg = evbuffer_pullup(in, (ssize_t)prefix_len);
    const char *client_name = (const char *)msg + name_at;
    if (!*client_name) {
        if (kind == 'B' && m->unnamed->len)
            m->bound = (struct stmt_bound){m->unnamed->parse, m->unnamed->len, &m->unnamed->effect};
        return unnamed_to_server(m) != 0 ? STMT_FAILED : stream(m, kind);
    }
    struct prepared *p = prepared_find(m->registry, client_name);
    if (!p) /* unknown: Postgres answers as it would */
        return stream(m, kind);
    if (kind == 'B')
        m->bound = (struct stmt_bound){p->parse, p->len, &p->effect};
    char name[24];
    if (ensure_on_server(m, p, name, REPLY_DROP) != 0)
        return STMT_FAILED;
    size_t name_len = strlen(name) + 1;
    size_t new_len = total - (prefix_len - name_at) + name_len;
    struct evbuffer *out = m->server->sb->out;
    uint8_t head[PROTO_HEADER_LEN] = {msg[0]};
    proto_put_u32(head + 1, (uint32_t)(new_len - 1));
    evbuffer_add(out, head, sizeof head);
    evbuffer_add(out, msg + PROTO_HEADER_LEN, name_at - PROTO_HEADER_LEN);
    evbuffer_add(out, name, name_len);
    evbuffer_drain(in, prefix_len);
    if (push(m, kind, REPLY_PASS, 0) < 0)
        return STMT_FAILED;
    m->rest = (uint32_t)(total - prefix_len);
    return m->rest ? STMT_STREAM_REST : STMT_CONSUMED;
}

/* Close 'S' of a named statement: forgotten, answered by the proxy (the
 * server keeps it for the other clients that prepare the same). */
static enum stmt_map_result map_close(struct stmt_map *m, struct evbuffer *in, const struct msg_header *h,
                                      size_t avail)
{
    uint32_t total = h->length + 1;
    if (total > PREPARED_MAX_MESSAGE)
        return stream(m, 'C');
    if (avail < total)
        return STMT_NEED_MORE;
    const uint8_t *msg = evbuffer_pullup(in, total);
    if (total < PROTO_HEADER_LEN + 2 || msg[PROTO_HEADER_LEN] != 'S')
        return stream(m, 'C');
    if (msg[PROTO_HEADER_LEN + 1] == '\0')
        return stream_dropping_unnamed(m, 'C');
    prepared_forget_closed(m->registry, msg, total);
    evbuffer_drain(in, total);
    return push(m, 'C', REPLY_SYNTH, 0) < 0 ? STMT_FAILED : STMT_CONSUMED;
}

enum stmt_map_result stmt_map_client_message(struct stmt_map *m, struct evbuffer *in, const struct msg_header *h,
                                             size_t avail)
{
    uint32_t total = h->length + 1;
    switch (h->type) {
    case 'P': {
        if (avail < PROTO_HEADER_LEN + 1)
            return STMT_NEED_MORE;
        uint8_t first[PROTO_HEADER_LEN + 1];
        evbuffer_copyout(in, first, sizeof first);
        if (total > PREPARED_MAX_MESSAGE) /* too large to keep: such a Parse pins the client */
            return stream(m, first[PROTO_HEADER_LEN] ? 'P' : 'p');
        if (avail < total)
            return STMT_NEED_MORE;
        return first[PROTO_HEADER_LEN] ? map_parse(m, in, total) : map_unnamed_parse(m, in, total);
    }
    case 'B':
        return map_use(m, in, h, avail, 'B');
    case 'D': {
        if (avail < PROTO_HEADER_LEN + 1)
            return STMT_NEED_MORE;
        uint8_t first[PROTO_HEADER_LEN + 1];
        evbuffer_copyout(in, first, sizeof first);
        if (first[PROTO_HEADER_LEN] != 'S')
            return stream(m, 'D');
        return map_use(m, in, h, avail, 'd');
    }
    case 'C':
        return map_close(m, in, h, avail);
    case 'Q':
        return stream_dropping_unnamed(m, 'Q');
    case 'E': case 'S': case 'F':
        return stream(m, h->type);
    default: /* Flush, COPY data, Terminate: no reply of their own */
        return STMT_STREAM;
    }
}

int stmt_map_server_message(struct reply_queue *q, struct pool_server *ps, struct unnamed_statement *u,
                            uint8_t type, struct evbuffer *to_client)
{
    struct reply_step step = reply_queue_on_server(q, type);
    if (step.failed_hash)
        pool_server_forget_statement(ps, step.failed_hash);
    if (step.failed_unnamed) /* Postgres dropped the old one before parsing: none now, on either side */
        unnamed_statement_forget(u);
    if (step.error) { /* the failure we asked for: the client hears the one it caused */
        evbuffer_add(to_client, step.error, proto_get_u32(step.error + 1) + 1);
        free(step.error);
        return 1;
    }
    return step.drop;
}

int stmt_map_answer_due(struct reply_queue *q, struct evbuffer *to_client)
{
    uint8_t reply;
    int any = 0;
    while ((reply = reply_queue_take_synth(q))) {
        uint8_t msg[5] = {reply, 0, 0, 0, 4};
        evbuffer_add(to_client, msg, sizeof msg);
        any = 1;
    }
    return any;
}

/* The replies a server owes (see reply_queue.h): a ring of entries, and the
 * rule for each kind of which server message completes it. */
#include "reply_queue.h"

#include <stdlib.h>
#include <string.h>

void reply_queue_init(struct reply_queue *q)
{
    memset(q, 0, sizeof *q);
}

static struct reply_entry *at(const struct reply_queue *q, uint32_t i)
{
    return &q->e[(q->head + i) % q->cap];
}

void reply_queue_reset(struct reply_queue *q)
{
    for (uint32_t i = 0; i < q->count; i++)
        free(at(q, i)->error);
    q->head = q->count = 0;
    q->skipping = 0;
}

void reply_queue_free(struct reply_queue *q)
{
    reply_queue_reset(q);
    free(q->e);
    memset(q, 0, sizeof *q);
}

static int grow(struct reply_queue *q)
{
    uint32_t cap = q->cap ? q->cap * 2 : 16;
    struct reply_entry *e = malloc(cap * sizeof *e);
    if (!e)
        return -1;
    for (uint32_t i = 0; i < q->count; i++)
        e[i] = *at(q, i);
    free(q->e);
    q->e = e;
    q->cap = cap;
    q->head = 0;
    return 0;
}

int reply_queue_push(struct reply_queue *q, uint8_t kind, enum reply_action action, uint64_t hash)
{
    if (q->skipping && kind != 'S')
        return 0;
    if (kind == 'S')
        q->skipping = 0;
    if (q->count == q->cap && grow(q) != 0)
        return -1;
    *at(q, q->count++) = (struct reply_entry){kind, (uint8_t)action, hash, NULL};
    return 1;
}

int reply_queue_push_failure(struct reply_queue *q, uint8_t kind, uint8_t *error)
{
    int r = reply_queue_push(q, kind, REPLY_FAIL, 0);
    if (r == 1)
        at(q, q->count - 1)->error = error;
    else
        free(error);
    return r;
}

static void pop(struct reply_queue *q)
{
    free(at(q, 0)->error);
    q->head = (q->head + 1) % q->cap;
    q->count--;
}

/* Whether `type` completes an entry of `kind`; 0 for a message inside it. */
static int completes(uint8_t kind, uint8_t type)
{
    switch (kind) {
    case 'P': case 'p': return type == '1';
    case 'B': return type == '2';
    case 'C': return type == '3';
    case 'd': case 'D': return type == 'T' || type == 'n';
    case 'E': return type == 'C' || type == 'I' || type == 's';
    default: return type == 'Z'; /* Sync, Query, FunctionCall */
    }
}

/* An ErrorResponse to an extended-protocol message: Postgres skips what
 * follows up to the Sync, so those entries get no reply at all. */
static void skip_to_sync(struct reply_queue *q)
{
    while (q->count && at(q, 0)->kind != 'S')
        pop(q);
    if (!q->count)
        q->skipping = 1;
}

struct reply_step reply_queue_on_server(struct reply_queue *q, uint8_t type)
{
    struct reply_step step = {0};
    if (!q->count || type == 'N' || type == 'S' || type == 'A')
        return step; /* notices, parameter reports, notifications: whenever they like */
    struct reply_entry *f = at(q, 0);
    int extended = f->kind != 'S' && f->kind != 'Q' && f->kind != 'F';
    if (type == 'E' && extended) {
        if (f->kind == 'P')
            step.failed_hash = f->hash;
        step.failed_unnamed = f->kind == 'p';
        step.error = f->error; /* taken before the entry goes */
        f->error = NULL;
        skip_to_sync(q);
        return step; /* the client sees the error, even one of ours: its next message is skipped */
    }
    step.drop = f->action == REPLY_DROP;
    if (completes(f->kind, type))
        pop(q);
    return step;
}

uint8_t reply_queue_take_synth(struct reply_queue *q)
{
    if (!q->count || at(q, 0)->action != REPLY_SYNTH)
        return 0;
    uint8_t kind = at(q, 0)->kind;
    pop(q);
    return kind == 'C' ? '3' : '1';
}

int reply_queue_empty(const struct reply_queue *q)
{
    return q->count == 0;
}

int reply_queue_passes(const struct reply_queue *q, uint8_t type)
{
    return !q->count || (type != 'E' && at(q, 0)->action == REPLY_PASS);
}

/* Prepared-statement registry per session (see prepared.h). The
 * re-prepare is Close + the client's own Parse, byte for byte, so parameter
 * types and the statement text are exactly what the client sent. */
#include "prepared.h"

#include <assert.h>
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

/* The statement name of a Parse or Close body, or NULL when malformed. */
static const char *name_in(const uint8_t *body, uint32_t len)
{
    return len > 0 && memchr(body, '\0', len) ? (const char *)body : NULL;
}

static int forget(struct prepared **list, const char *name)
{
    for (struct prepared **p = list; *p; p = &(*p)->next) {
        if (strcmp((*p)->name, name) == 0) {
            struct prepared *gone = *p;
            *p = gone->next;
            free(gone->name);
            free(gone->parse);
            free(gone);
            return 1;
        }
    }
    return 0;
}

int prepared_remember(struct prepared **list, const uint8_t *msg, uint32_t len)
{
    assert(list && msg);
    if (len <= PROTO_HEADER_LEN || len > PREPARED_MAX_MESSAGE)
        return -1;
    const char *name = name_in(msg + PROTO_HEADER_LEN, len - PROTO_HEADER_LEN);
    if (!name || !*name)
        return 0;
    forget(list, name);
    struct prepared *p = calloc(1, sizeof *p);
    if (!p)
        return -1;
    p->name = strdup(name);
    p->parse = malloc(len);
    if (!p->name || !p->parse) {
        free(p->name);
        free(p->parse);
        free(p);
        return -1;
    }
    memcpy(p->parse, msg, len);
    p->len = len;
    p->next = *list;
    *list = p;
    return 0;
}

void prepared_forget_closed(struct prepared **list, const uint8_t *msg, uint32_t len)
{
    assert(list && msg);
    if (len <= PROTO_HEADER_LEN + 1 || msg[PROTO_HEADER_LEN] != 'S')
        return;
    const char *name = name_in(msg + PROTO_HEADER_LEN + 1, len - PROTO_HEADER_LEN - 1);
    if (name && *name)
        forget(list, name);
}

int prepared_forget(struct prepared **list, const char *name)
{
    return forget(list, name);
}

struct prepared *prepared_find(struct prepared **list, const char *name)
{
    for (struct prepared **p = list; *p; p = &(*p)->next) {
        if (strcmp((*p)->name, name) == 0) {
            struct prepared *found = *p;
            *p = found->next;
            found->next = *list;
            *list = found;
            return found;
        }
    }
    return NULL;
}

void prepared_free_all(struct prepared **list)
{
    while (*list) {
        struct prepared *p = *list;
        *list = p->next;
        free(p->name);
        free(p->parse);
        free(p);
    }
}

int prepared_write_reprepare(const struct prepared *list, struct evbuffer *out)
{
    assert(out);
    int n = 0;
    for (const struct prepared *p = list; p; p = p->next, n++) {
        size_t name_len = strlen(p->name) + 1;
        uint8_t head[6];
        head[0] = 'C';
        proto_put_u32(head + 1, (uint32_t)(4 + 1 + name_len));
        head[5] = 'S';
        evbuffer_add(out, head, sizeof head);
        evbuffer_add(out, p->name, name_len);
        evbuffer_add(out, p->parse, p->len);
    }
    if (n) {
        uint8_t sync[5] = {'S', 0, 0, 0, 4};
        evbuffer_add(out, sync, sizeof sync);
    }
    return n;
}

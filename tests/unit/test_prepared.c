/* Unit tests for the prepared-statement registry behind re-prepare. */
#include <event2/buffer.h>
#include <stdlib.h>

#include "prepared.h"
#include "proto.h"
#include "unit.h"

/* Builds a Parse message: name, query, no parameter types. */
static uint32_t make_parse(uint8_t *buf, const char *name, const char *query)
{
    size_t nl = strlen(name) + 1, ql = strlen(query) + 1;
    uint32_t len = (uint32_t)(4 + nl + ql + 2);
    buf[0] = 'P';
    proto_put_u32(buf + 1, len);
    memcpy(buf + 5, name, nl);
    memcpy(buf + 5 + nl, query, ql);
    buf[5 + nl + ql] = 0;
    buf[6 + nl + ql] = 0;
    return len + 1;
}

static uint32_t make_close(uint8_t *buf, char kind, const char *name)
{
    size_t nl = strlen(name) + 1;
    buf[0] = 'C';
    proto_put_u32(buf + 1, (uint32_t)(4 + 1 + nl));
    buf[5] = (uint8_t)kind;
    memcpy(buf + 6, name, nl);
    return (uint32_t)(6 + nl);
}

int main(void)
{
    struct prepared *list = NULL;
    uint8_t msg[256];
    uint32_t n = make_parse(msg, "", "SELECT 1");
    prepared_remember(&list, msg, n);
    CHECK("prepared: unnamed statements are not tracked", list == NULL);

    n = make_parse(msg, "s1", "SELECT * FROM checks");
    prepared_remember(&list, msg, n);
    n = make_parse(msg, "s2", "SELECT 2");
    prepared_remember(&list, msg, n);
    n = make_parse(msg, "s1", "SELECT * FROM checks WHERE id = $1");
    prepared_remember(&list, msg, n);
    int count = 0;
    for (struct prepared *p = list; p; p = p->next)
        count++;
    CHECK("prepared: re-Parse of a name replaces it", count == 2);

    struct evbuffer *out = evbuffer_new();
    int k = prepared_write_reprepare(list, out);
    size_t len = evbuffer_get_length(out);
    uint8_t *bytes = evbuffer_pullup(out, -1);
    CHECK("prepared: re-prepare covers every statement", k == 2);
    CHECK("prepared: ends with one Sync", len > 5 && memcmp(bytes + len - 5, "S\0\0\0\4", 5) == 0);
    CHECK("prepared: starts with a statement Close", bytes[0] == 'C' && bytes[5] == 'S');
    CHECK("prepared: carries the latest text", memmem(bytes, len, "WHERE id = $1", 13) != NULL);
    evbuffer_free(out);

    n = make_close(msg, 'P', "s1");
    prepared_forget_closed(&list, msg, n);
    CHECK("prepared: closing a portal keeps the statement", list && (list->next != NULL));
    n = make_close(msg, 'S', "s1");
    prepared_forget_closed(&list, msg, n);
    CHECK("prepared: closing the statement forgets it", list && !list->next && strcmp(list->name, "s2") == 0);

    uint8_t bad[] = {'P', 0, 0, 0, 6, 'x'};
    CHECK("prepared: unterminated name refused", prepared_remember(&list, bad, sizeof bad) == -1 || list->next == NULL);
    out = evbuffer_new();
    prepared_free_all(&list);
    CHECK("prepared: empty list writes nothing", prepared_write_reprepare(list, out) == 0 && evbuffer_get_length(out) == 0);
    evbuffer_free(out);
    return UNIT_RESULT();
}

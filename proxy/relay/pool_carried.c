/* What a pool carries for its clients (see pool_carried.h): reported
 * parameter values and session-level SETs, and the statements that take a
 * server from what it has to what a client wants. */
#include "pool_carried.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

int param_values_note(struct param_values *p, const uint8_t *msg, uint32_t len)
{
    if (len < PROTO_HEADER_LEN + 4 || msg[0] != 'S' || msg[len - 1] != '\0')
        return -1;
    const char *name = (const char *)msg + PROTO_HEADER_LEN;
    const char *name_end = memchr(name, '\0', len - PROTO_HEADER_LEN);
    if (!name_end || name_end + 1 >= (const char *)msg + len)
        return -1;
    const char *value = name_end + 1;
    int i = pin_tracked_index(name);
    if (i < 0)
        return 0;
    if (strlen(value) >= sizeof p->value[i])
        return -1;
    strcpy(p->value[i], value);
    p->known[i] = 1;
    return 0;
}

/* ---- carried SETs ---- */

static int carried_find(const struct carried_sets *c, const char *name)
{
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->items[i].name, name) == 0)
            return i;
    return -1;
}

static void carried_remove(struct carried_sets *c, int i)
{
    free(c->items[i].name);
    free(c->items[i].sql);
    free(c->items[i].value);
    c->items[i] = c->items[--c->n];
}

int carried_sets_apply(struct carried_sets *c, const char *name, int reset, const char *value, const char *sql,
                       size_t len)
{
    int i = carried_find(c, name);
    if (reset) {
        if (i >= 0)
            carried_remove(c, i);
        return 0;
    }
    if (i < 0 && c->n == CARRIED_MAX)
        return -1;
    if (!c->items && !(c->items = calloc(CARRIED_MAX, sizeof *c->items)))
        return -1;
    char *copy = strndup(sql, len);
    char *key = i < 0 ? strdup(name) : NULL;
    char *val = value ? strdup(value) : NULL;
    if (!copy || (i < 0 && !key) || (value && !val)) {
        free(copy);
        free(key);
        free(val);
        return -1;
    }
    if (i < 0) {
        i = c->n++;
        c->items[i].name = key;
    } else {
        free(c->items[i].sql);
        free(c->items[i].value);
    }
    c->items[i].sql = copy;
    c->items[i].value = val;
    return 0;
}

void carried_sets_free(struct carried_sets *c)
{
    while (c->n)
        carried_remove(c, c->n - 1);
    free(c->items);
    c->items = NULL;
}

#define CARRIED_SQL_MAX (PIN_SEARCH_PATH_MAX + 256)

/* What a client's SET runs as on a server routed to `schema`: as written,
 * but a search_path with the route's schema first (the dual-write triggers
 * read the first schema on it). A path too long for `buf` (never one
 * pin_carried_set made) runs as written. */
static const char *wanted_sql(const struct carried_set *it, const char *schema, char *buf, size_t cap)
{
    if (!it->value || !schema)
        return it->sql;
    size_t used = (size_t)snprintf(buf, cap, "SET search_path TO \"");
    for (const char *c = schema; *c && used + 2 < cap; c++) {
        if (*c == '"')
            buf[used++] = '"';
        buf[used++] = *c;
    }
    int n = used < cap ? snprintf(buf + used, cap - used, "\", %s", it->value) : -1;
    return n >= 0 && used + (size_t)n < cap ? buf : it->sql;
}

int carried_sets_differ(const struct carried_sets *have, const struct carried_sets *want, const char *schema)
{
    if (have->n != want->n)
        return 1;
    char buf[CARRIED_SQL_MAX];
    for (int i = 0; i < want->n; i++) {
        int j = carried_find(have, want->items[i].name);
        const char *sql = wanted_sql(&want->items[i], schema, buf, sizeof buf);
        if (j < 0 || strcmp(have->items[j].sql, sql) != 0)
            return 1;
    }
    return 0;
}

int carried_sets_sync(struct carried_sets *have, const struct carried_sets *want, const char *schema,
                      struct evbuffer *out)
{
    for (int i = have->n - 1; i >= 0; i--)
        if (carried_find(want, have->items[i].name) < 0) {
            evbuffer_add_printf(out, "RESET %s", have->items[i].name);
            evbuffer_add(out, "", 1);
            carried_remove(have, i);
        }
    char buf[CARRIED_SQL_MAX];
    int rc = 0;
    for (int i = 0; i < want->n; i++) {
        const struct carried_set *it = &want->items[i];
        int j = carried_find(have, it->name);
        const char *sql = wanted_sql(it, schema, buf, sizeof buf);
        if (j >= 0 && !strcmp(have->items[j].sql, sql))
            continue;
        /* a newline first: the client's text may end in a -- comment */
        evbuffer_add_printf(out, "%s\n", sql);
        evbuffer_add(out, "", 1);
        if (rc == 0 && carried_sets_apply(have, it->name, 0, NULL, sql, strlen(sql)) != 0)
            rc = -1;
    }
    if (rc != 0)
        carried_sets_free(have);
    return rc;
}

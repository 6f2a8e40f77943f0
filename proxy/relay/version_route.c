/* The table of routes, one per migration in flight (see version_route.h).
 * A release built with migration k was built after every migration below
 * k: it sees their new shapes, and the old shape of the ones started
 * after it. Newest first among the new shapes, because a chain on one
 * table shows a child's view under the same name as its parent's; oldest
 * first among the old ones, because the old shape of the oldest is the
 * table as every release before the chain knew it. */
#include "version_route.h"

#include <stdio.h>
#include <string.h>

static int fits(const char *version, const char *new_schema, const char *old_schema)
{
    struct version_route_entry e;
    return version && *version && strlen(version) < sizeof e.version &&
           strlen(new_schema ? new_schema : "") < sizeof e.new_schema && old_schema &&
           strlen(old_schema) < sizeof e.old_schema;
}

static void fill(struct version_route_entry *e, const char *version, const char *new_schema,
                 const char *old_schema, int by_runner)
{
    memset(e, 0, sizeof *e);
    snprintf(e->version, sizeof e->version, "%s", version);
    snprintf(e->new_schema, sizeof e->new_schema, "%s", new_schema ? new_schema : "");
    snprintf(e->old_schema, sizeof e->old_schema, "%s", old_schema);
    e->by_runner = by_runner;
}

int version_route_index(const struct version_route *r, const char *version)
{
    for (int i = 0; version && i < r->n; i++)
        if (!strcmp(r->e[i].version, version))
            return i;
    return -1;
}

int version_route_sees_new(const struct version_route *r, const char *declared, int k)
{
    int d = version_route_index(r, declared);
    return d >= 0 && d >= k;
}

int version_route_has_path(const struct version_route *r, const char *path)
{
    if (r->n == 0)
        return path == NULL;
    for (int d = 0; path && d <= r->n; d++)
        if (!strcmp(path, r->paths[d]))
            return 1;
    return 0;
}

static void add_schema(char *path, size_t cap, const char *schema)
{
    size_t used = strlen(path);
    if (!schema[0] || used >= cap)
        return;
    snprintf(path + used, cap - used, "%s%s", used ? "," : "", schema);
}

/* Path d + 1 for a session declaring entry d (d = -1: none of them). */
static void build_path(const struct version_route *r, int d, char *path, size_t cap)
{
    path[0] = '\0';
    for (int k = d; k >= 0; k--)
        add_schema(path, cap, r->e[k].new_schema[0] ? r->e[k].new_schema : r->e[k].old_schema);
    for (int k = d + 1; k < r->n; k++)
        add_schema(path, cap, r->e[k].old_schema);
}

/* The paths again, and whether anything a session sees changed. */
struct before {
    struct version_route_entry e[RELAY_ROUTES_MAX];
    int n;
};

static void remember(const struct version_route *r, struct before *b)
{
    memcpy(b->e, r->e, sizeof b->e);
    b->n = r->n;
}

static int rebuilt(struct version_route *r, const struct before *b)
{
    for (int d = -1; d < r->n; d++)
        build_path(r, d, r->paths[d + 1], sizeof r->paths[d + 1]);
    if (r->n != b->n)
        return 1;
    for (int i = 0; i < r->n; i++)
        if (strcmp(r->e[i].version, b->e[i].version) || strcmp(r->e[i].new_schema, b->e[i].new_schema) ||
            strcmp(r->e[i].old_schema, b->e[i].old_schema))
            return 1;
    return 0;
}

static int runner_index(const struct version_route *r)
{
    for (int i = 0; i < r->n; i++)
        if (r->e[i].by_runner)
            return i;
    return -1;
}

static void remove_at(struct version_route *r, int i)
{
    memmove(&r->e[i], &r->e[i + 1], (size_t)(r->n - i - 1) * sizeof r->e[0]);
    r->n--;
}

static void insert_at(struct version_route *r, int i, const struct version_route_entry *e)
{
    if (r->n == RELAY_ROUTES_MAX)
        r->n--; /* the newest is dropped: at most 8 are in flight */
    memmove(&r->e[i + 1], &r->e[i], (size_t)(r->n - i) * sizeof r->e[0]);
    r->e[i] = *e;
    r->n++;
}

int version_route_set_runner(struct version_route *r, const char *version, const char *new_schema,
                             const char *old_schema)
{
    struct before before;
    remember(r, &before);
    int mine = runner_index(r);
    int ok = fits(version, new_schema, old_schema);
    if (mine >= 0 && !(ok && !strcmp(r->e[mine].version, version)))
        remove_at(r, mine);
    if (ok) {
        struct version_route_entry e;
        fill(&e, version, new_schema, old_schema, 1);
        int at = version_route_index(r, version);
        if (at >= 0)
            r->e[at] = e;
        else
            insert_at(r, 0, &e);
    }
    return rebuilt(r, &before);
}

int version_route_set_flight(struct version_route *r, const struct flight_route *list, int n)
{
    struct before before;
    remember(r, &before);
    int mine = runner_index(r);
    struct version_route_entry own;
    if (mine >= 0)
        own = r->e[mine];
    r->n = 0;
    int placed = 0;
    for (int i = 0; i < n && r->n < RELAY_ROUTES_MAX; i++) {
        if (mine >= 0 && !strcmp(list[i].version, own.version)) {
            r->e[r->n++] = own;
            placed = 1;
        } else if (fits(list[i].version, list[i].new_schema, list[i].old_schema)) {
            fill(&r->e[r->n++], list[i].version, list[i].new_schema, list[i].old_schema, 0);
        }
    }
    if (mine >= 0 && !placed)
        insert_at(r, 0, &own);
    return rebuilt(r, &before);
}

int version_route_set_one(struct version_route *r, const struct flight_route *one)
{
    struct before before;
    remember(r, &before);
    int at = version_route_index(r, one->version);
    if (at >= 0 && r->e[at].by_runner)
        return 0;
    if (!one->old_schema) {
        if (at >= 0)
            remove_at(r, at);
    } else if (fits(one->version, one->new_schema, one->old_schema)) {
        struct version_route_entry e;
        fill(&e, one->version, one->new_schema, one->old_schema, 0);
        if (at >= 0)
            r->e[at] = e;
        else if (r->n < RELAY_ROUTES_MAX)
            insert_at(r, r->n, &e);
    }
    return rebuilt(r, &before);
}

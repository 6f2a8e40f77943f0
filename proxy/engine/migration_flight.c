/* Several migrations in flight (see migration_flight.h). */
#include "migration_flight.h"

#include <stdio.h>
#include <string.h>

static const struct mig_flight *find(const struct mig_flight *flight, size_t n, const char *name)
{
    for (size_t i = 0; name && i < n; i++)
        if (flight[i].name && !strcmp(flight[i].name, name))
            return &flight[i];
    return NULL;
}

static const struct mig_flight *parent_of(const struct mig_flight *flight, size_t n, const struct mig_flight *m)
{
    return find(flight, n, m->parent);
}

/* A loop of parents (a table edited by hand) ends the walk after n steps. */
int mig_flight_below(const struct mig_flight *flight, size_t n, const struct mig_flight *a,
                     const struct mig_flight *b)
{
    const struct mig_flight *p = parent_of(flight, n, b);
    for (size_t steps = 0; p && steps <= n; steps++, p = parent_of(flight, n, p))
        if (!strcmp(p->name, a->name))
            return 1;
    return 0;
}

/* The first table both change, or NULL. */
static const char *shared_table(const struct mig_flight *a, const struct mig_flight *b)
{
    for (size_t i = 0; i < a->ntables; i++)
        for (size_t j = 0; j < b->ntables; j++)
            if (!strcmp(a->tables[i], b->tables[j]))
                return a->tables[i];
    return NULL;
}

/* The in-flight migrations built on m (its parent, or an ancestor's), as
 * a list for a message: newest first, the order they must go in. */
static size_t above(const struct mig_flight *flight, size_t n, const struct mig_flight *m, char *out, size_t cap)
{
    size_t count = 0, len = 0;
    out[0] = '\0';
    for (size_t i = n; i-- > 0;) {
        if (!mig_flight_below(flight, n, m, &flight[i]))
            continue;
        int w = snprintf(out + len, cap - len, "%s%s", count ? ", " : "", flight[i].name);
        if (w > 0 && (size_t)w < cap - len)
            len += (size_t)w;
        count++;
    }
    return count;
}

static int admit_start(const struct mig_flight *flight, size_t n, const struct mig_flight *m, char *why, size_t cap)
{
    if (find(flight, n, m->name))
        return mig_refuse(409, why, cap, "migration %s is in flight already", m->name);
    if (n >= MIG_FLIGHT_MAX)
        return mig_refuse(409, why, cap, "%zu migrations are in flight, the most there may be; complete the oldest (%s)"
                      " first", n, flight[0].name);
    const struct mig_flight *parent = parent_of(flight, n, m);
    if (parent) {
        switch (parent->phase) {
        case MIG_PH_FAILED:
            return mig_refuse(409, why, cap, "migration %s, the parent of %s, failed; roll it back (or start it again)"
                          " before building on it", parent->name, m->name);
        case MIG_PH_COMPLETING:
            return mig_refuse(409, why, cap, "migration %s, the parent of %s, is completing (a cutover runs); start %s"
                          " again when it has ended", parent->name, m->name, m->name);
        case MIG_PH_ROLLING_BACK:
            return mig_refuse(409, why, cap, "migration %s, the parent of %s, is rolling back", parent->name, m->name);
        default: break;
        }
        for (size_t i = 0; i < n; i++)
            if (flight[i].parent && !strcmp(flight[i].parent, parent->name))
                return mig_refuse(409, why, cap, "migration %s is built on %s already: %s must name %s (the newest of"
                              " that line) as its parent", flight[i].name, parent->name, m->name, flight[i].name);
    }
    /* a table changed in flight is changed again only on top of that change */
    for (size_t i = 0; i < n; i++) {
        const char *t = shared_table(m, &flight[i]);
        if (!t || (parent && (parent == &flight[i] || mig_flight_below(flight, n, &flight[i], parent))))
            continue;
        const struct mig_flight *newest = &flight[i];
        for (size_t j = 0; j < n; j++)
            if (mig_flight_below(flight, n, newest, &flight[j]))
                newest = &flight[j];
        return mig_refuse(409, why, cap, "%s changes %s, which migration %s in flight changes too: give %s the parent"
                      " %s (the newest in flight on that line) to build on its shape, or complete %s first", m->name,
                      t, flight[i].name, m->name, newest->name, flight[i].name);
    }
    return 0;
}

/* Complete and finalize: after every migration below m that changes one
 * of its tables (m's shape of that table was built on theirs). */
static int admit_in_order(const struct mig_flight *flight, size_t n, enum mig_request q, const struct mig_flight *m,
                          char *why, size_t cap)
{
    for (size_t i = 0; i < n; i++) {
        const char *t = shared_table(m, &flight[i]);
        if (t && mig_flight_below(flight, n, &flight[i], m))
            return mig_refuse(409, why, cap, "migration %s is built on %s, in flight below it on %s: %s %s first"
                          " (migrations of one table go oldest first)", m->name, flight[i].name, t,
                          q == MIG_REQ_FINALIZE ? "finalize or complete" : "complete", flight[i].name);
    }
    return 0;
}

int mig_flight_admit(const struct mig_flight *flight, size_t n, enum mig_request q, const struct mig_flight *m,
                     int cascade, char *why, size_t cap)
{
    if (why && cap)
        why[0] = '\0';
    if (!m || !m->name)
        return mig_refuse(404, why, cap, "no migration named");
    if (q == MIG_REQ_START)
        return admit_start(flight, n, m, why, cap);
    if (q == MIG_REQ_STATUS)
        return 0;
    if (!find(flight, n, m->name))
        return mig_refuse(404, why, cap, "migration %s is not in flight", m->name);
    char names[512];
    switch (q) {
    case MIG_REQ_COMPLETE:
    case MIG_REQ_FINALIZE: return admit_in_order(flight, n, q, m, why, cap);
    case MIG_REQ_ROLLBACK:
        if (above(flight, n, m, names, sizeof names) && !cascade)
            return mig_refuse(409, why, cap, "migrations built on %s are in flight (%s): roll them back first, newest"
                          " first, or roll %s back with them", m->name, names, m->name);
        return 0;
    case MIG_REQ_REVERT:
        /* the revert drops m's new shape, which theirs are built on */
        if (above(flight, n, m, names, sizeof names))
            return mig_refuse(409, why, cap, "migrations built on %s are in flight (%s): roll them back first, newest"
                          " first", m->name, names);
        return 0;
    default: return mig_refuse(400, why, cap, "unknown request");
    }
}

unsigned mig_flight_seen(const struct mig_flight *flight, size_t n, const char *declared)
{
    const struct mig_flight *d = find(flight, n, declared);
    unsigned seen = 0;
    for (size_t i = 0; d && i < n && i < sizeof seen * 8; i++)
        if (&flight[i] == d || mig_flight_below(flight, n, &flight[i], d))
            seen |= 1u << i;
    return seen;
}

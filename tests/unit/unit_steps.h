/* Searching a plan's step list in unit tests: where a step containing a
 * piece of SQL is, so a test can check what the plan does and in what order. */
#ifndef PGTANDEM_UNIT_STEPS_H
#define PGTANDEM_UNIT_STEPS_H
#include <string.h>

#include "migration_sql.h"

/* The position of the first step containing needle, or -1. */
static inline long step_at(const struct mig_steps *l, const char *needle)
{
    for (size_t i = 0; i < l->n; i++)
        if (strstr(l->v[i].sql, needle))
            return (long)i;
    return -1;
}

static inline int steps_contain(const struct mig_steps *l, const char *needle)
{
    return step_at(l, needle) >= 0;
}
#endif

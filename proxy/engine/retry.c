/* The retry policy (see retry.h). */
#include "retry.h"

#include <stdlib.h>
#include <string.h>

long retry_delay_ms(long first_ms, int attempt, unsigned int *seed)
{
    if (first_ms <= 0)
        first_ms = RETRY_FIRST_MS;
    int shift = attempt < 0 ? 0 : attempt > 10 ? 10 : attempt;
    long base = first_ms << shift;
    if (base > RETRY_CAP_MS)
        base = RETRY_CAP_MS;
    return base / 2 + (long)(rand_r(seed) % (unsigned int)(base + 1));
}

int retry_worthwhile(const char *sqlstate)
{
    return sqlstate && strcmp(sqlstate, SQLSTATE_LOCK_NOT_AVAILABLE) == 0;
}

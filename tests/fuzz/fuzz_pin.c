/* libFuzzer target for what the transaction pool reads of a client's SQL
 * before it runs (pin.c): the scan that decides whether to parse, and the
 * walk over libpg_query's parse tree. */
#include <stdint.h>
#include <stdlib.h>

#include "pin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[64];
    (void)pin_reason_for_sql((const char *)data, size, why, sizeof why);
    return 0;
}

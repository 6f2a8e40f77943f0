/* libFuzzer target for what the transaction pool reads of a client's SQL
 * before it runs (pin.c): the scan that decides whether to parse, the
 * walk over libpg_query's parse tree, and the SETs it carries (a
 * search_path's names quoted anew). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[64];
    (void)pin_reason_for_sql((const char *)data, size, why, sizeof why);
    struct pin_carry carry;
    if (pin_carried_set((const char *)data, size, &carry) &&
        (!memchr(carry.name, '\0', sizeof carry.name) || !memchr(carry.value, '\0', sizeof carry.value)))
        __builtin_trap();
    return 0;
}

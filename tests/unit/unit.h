/* A minimal unit-test harness: each check prints PASS/FAIL lines that
 * tests/run.sh counts; main() returns non-zero when anything failed. */
#ifndef PGTANDEM_UNIT_H
#define PGTANDEM_UNIT_H
#include <stdio.h>
#include <string.h>

static int unit_failures;

#define CHECK(name, cond) do { \
    if (cond) printf("PASS %s\n", name); \
    else { printf("FAIL %s (%s:%d: %s)\n", name, __FILE__, __LINE__, #cond); unit_failures++; } \
} while (0)

#define UNIT_RESULT() (unit_failures ? 1 : 0)
#endif

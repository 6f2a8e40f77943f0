/* Unit tests for the decisions of the contract: the one retry policy
 * (engine/retry.c) and what the cutover does after an attempt that did not
 * commit (online/cutover.c, cutover_next_after). */
#include <stdio.h>

#include "cutover.h"
#include "retry.h"
#include "unit.h"

static void test_delays_double_with_jitter_and_are_capped(void)
{
    unsigned int seed = 12345;
    int within = 1, capped = 1, varies = 0;
    long first = -1;
    for (int attempt = 0; attempt < 12; attempt++) {
        long base = (long)RETRY_FIRST_MS << attempt;
        if (base > RETRY_CAP_MS)
            base = RETRY_CAP_MS;
        for (int i = 0; i < 200; i++) {
            long d = retry_delay_ms(RETRY_FIRST_MS, attempt, &seed);
            if (d < base / 2 || d > base / 2 + base)
                within = 0;
            if (d > RETRY_CAP_MS * 3 / 2)
                capped = 0;
            if (attempt == 0 && first >= 0 && d != first)
                varies = 1;
            if (attempt == 0)
                first = d;
        }
    }
    CHECK("retry delay stays within half to one and a half times its base", within);
    CHECK("retry delay never exceeds the cap plus its jitter", capped);
    CHECK("retry delay is jittered", varies);
    CHECK("a huge attempt number does not overflow", retry_delay_ms(RETRY_FIRST_MS, 1 << 20, &seed) > 0);
    CHECK("a non-positive first delay takes the default", retry_delay_ms(0, 0, &seed) >= RETRY_FIRST_MS / 2);
}

static void test_only_lock_races_are_worth_a_retry(void)
{
    CHECK("55P03 is retried", retry_worthwhile("55P03"));
    CHECK("a syntax error is not", !retry_worthwhile("42601"));
    CHECK("a cancel is not", !retry_worthwhile("57014"));
    CHECK("no sqlstate is not", !retry_worthwhile(NULL));
}

static void test_what_follows_a_failed_attempt(void)
{
    CHECK("lock timeout with attempts left: retry", cutover_next_after("55P03", 1, 10) == CUTOVER_NEXT_RETRY);
    CHECK("lock timeout on the last attempt: give up", cutover_next_after("55P03", 10, 10) == CUTOVER_NEXT_GIVE_UP);
    CHECK("the fleet stopped holding: retry", cutover_next_after("PGT01", 2, 10) == CUTOVER_NEXT_RETRY);
    CHECK("the statement budget ran out: fail now", cutover_next_after("57014", 1, 10) == CUTOVER_NEXT_FAIL);
    CHECK("an error in the contract's SQL: fail now", cutover_next_after("42703", 1, 10) == CUTOVER_NEXT_FAIL);
    CHECK("a failing statement fails even on the last attempt",
          cutover_next_after("23505", 10, 10) == CUTOVER_NEXT_FAIL);
    CHECK("blocked or drain timeout (no sqlstate): retry", cutover_next_after(NULL, 3, 10) == CUTOVER_NEXT_RETRY);
    CHECK("blocked on the last attempt: give up", cutover_next_after(NULL, 10, 10) == CUTOVER_NEXT_GIVE_UP);
    /* a statement that failed without a sqlstate (the connection went) */
    CHECK("a statement error with no sqlstate: fail now", cutover_next_after("", 1, 2) == CUTOVER_NEXT_FAIL);
}

int main(void)
{
    test_delays_double_with_jitter_and_are_capped();
    test_only_lock_races_are_worth_a_retry();
    test_what_follows_a_failed_attempt();
    return UNIT_RESULT();
}

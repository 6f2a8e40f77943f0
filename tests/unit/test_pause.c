/* Unit tests for the pause drain decision (pause_drain_decision): what a
 * re-check does given the pause and how many sessions are still inside a
 * transaction, and that the busy count it reads agrees with
 * session_at_boundary for sessions in every state. */
#include <stdlib.h>
#include <string.h>

#include "pause.h"
#include "session.h"
#include "session_state.h"
#include "unit.h"

static void test_decision(void)
{
    CHECK("drain: nothing to decide when not paused", pause_drain_decision(0, 0, 0) == PAUSE_NOT_PAUSED &&
                                                         pause_drain_decision(0, 0, 5) == PAUSE_NOT_PAUSED);
    CHECK("drain: paused with no busy session drains", pause_drain_decision(1, 0, 0) == PAUSE_NOW_DRAINED);
    CHECK("drain: one busy session keeps the pause waiting", pause_drain_decision(1, 0, 1) == PAUSE_STILL_BUSY);
    CHECK("drain: many busy sessions keep it waiting", pause_drain_decision(1, 0, 1000) == PAUSE_STILL_BUSY);
    CHECK("drain: already drained stays drained", pause_drain_decision(1, 1, 0) == PAUSE_ALREADY_DRAINED &&
                                                     pause_drain_decision(1, 1, 3) == PAUSE_ALREADY_DRAINED);
}

/* Sessions in every state, ready ones idle, in a transaction, mid-request
 * or in COPY: exactly the ready ones not at a boundary are busy. */
static void test_busy_means_not_at_boundary(void)
{
    struct session s;
    int ok = 1;
    for (int st = 0; st < SESS_NSTATES; st++) {
        for (int variant = 0; variant < 5; variant++) {
            memset(&s, 0, sizeof s);
            s.state = (enum session_state)st;
            tracker_init(&s.tracker);
            if (variant == 1)
                s.tracker.tx_status = 'T';
            if (variant == 2)
                s.tracker.pending_rfq = 1;
            if (variant == 3)
                s.tracker.mid_unit = 1;
            if (variant == 4)
                s.tracker.copy_in = 1;
            int busy = st == SESS_READY && variant != 0;
            ok &= session_at_boundary(&s) == !busy;
        }
    }
    CHECK("drain: busy is exactly ready and not at a boundary", ok);
}

int main(void)
{
    test_decision();
    test_busy_means_not_at_boundary();
    return UNIT_RESULT();
}

/* Unit tests for the backfill's latency budget (backfill_budget.c): the
 * limit from a baseline and a ratio or from the absolute setting, one
 * worker with halved batches and doubled pauses when over, holding near
 * the limit, climbing back one step at a time under it, the routes kept
 * apart, a route without traffic ignored, the starved report, the
 * floor, an app slow by itself told apart from one the backfill slows,
 * and an app faster than the floor: its batches shrunk before its workers. */
#include "backfill_budget.h"
#include "unit.h"

static struct budget_input app(double baseline, double p99)
{
    struct budget_input in = {.ratio = 1.5, .baseline_ms = {baseline, 0}, .p99_ms = {p99, 0},
                              .samples = {500, 0}, .batch_rows = 4000, .min_rows = 100, .max_rows = 100000,
                              .wanted_workers = 4};
    return in;
}

static void test_limits(void)
{
    struct budget b = {0};
    struct budget_input in = app(10.0, 12.0);
    budget_decide(&b, &in, 1000);
    CHECK("ratio: 1.5 x a 10 ms baseline", b.kind == BUDGET_RATIO && b.limit_ms[0] == 15.0);
    CHECK("ratio: a route without a baseline has no limit", b.limit_ms[1] == 0);
    CHECK("ratio: 12 of 15 ms is under 0.8 of it, not near", b.state == BUDGET_NEAR || b.state == BUDGET_UNDER);
    struct budget small = {0};
    in = app(0.4, 0.5);
    budget_decide(&small, &in, 1000);
    CHECK("ratio: a tiny baseline gets BUDGET_SLACK_MS", small.limit_ms[0] == 0.4 + BUDGET_SLACK_MS);
    struct budget abs = {0};
    in = app(10.0, 30.0);
    in.absolute_ms = 40;
    budget_decide(&abs, &in, 1000);
    CHECK("absolute: max_app_p99_ms wins over the ratio", abs.kind == BUDGET_ABSOLUTE && abs.limit_ms[0] == 40 &&
                                                              abs.limit_ms[1] == 40 && abs.state == BUDGET_UNDER);
    struct budget off = {0};
    in = app(10.0, 100.0);
    in.ratio = 0;
    CHECK("off: nothing to say", budget_decide(&off, &in, 1000) == BUDGET_NOTHING && off.state == BUDGET_IDLE &&
                                     off.workers == 4 && off.batch_cap == 0 && off.pause_ms == 0);
}

static void test_over_and_back(void)
{
    struct budget b = {0};
    struct budget_input in = app(10.0, 30.0);
    CHECK("over: engages", budget_decide(&b, &in, 1000) == BUDGET_ENGAGED && b.engaged && b.engagements == 1);
    CHECK("over: one worker, half the batch, a pause", b.workers == 1 && b.batch_cap == 2000 &&
                                                           b.pause_ms == BUDGET_PAUSE_MIN_MS);
    CHECK("over: says which budget", strstr(b.reason, "app p99 30.0 ms > budget 15.0 ms (1.5 x baseline 10.0 ms, "
                                                      "old release)") == b.reason);
    CHECK("a batch is capped", budget_batch_rows(&b, 4000) == 2000 && budget_batch_rows(&b, 500) == 500);
    CHECK("no decision before BUDGET_EVAL_MS", budget_decide(&b, &in, 1100) == BUDGET_NOTHING && b.batch_cap == 2000);
    budget_decide(&b, &in, 1250);
    CHECK("over again: halved and doubled", b.batch_cap == 1000 && b.pause_ms == 2 * BUDGET_PAUSE_MIN_MS);
    in.p99_ms[0] = 14.0;
    budget_decide(&b, &in, 1500);
    CHECK("near: holds", b.state == BUDGET_NEAR && b.batch_cap == 1000 && b.workers == 1 && b.engaged &&
                             strstr(b.reason, "holding") != NULL);
    in.p99_ms[0] = 9.0;
    budget_decide(&b, &in, 1750);
    CHECK("under: the pause halves, the batch grows, still one worker", b.state == BUDGET_UNDER &&
                                                                            b.pause_ms == BUDGET_PAUSE_MIN_MS &&
                                                                            b.batch_cap == 1501 && b.workers == 1);
    enum budget_event ev = BUDGET_NOTHING;
    double t = 1750;
    int steps = 0;
    while (b.engaged && steps++ < 100)
        ev = budget_decide(&b, &in, t += BUDGET_EVAL_MS);
    CHECK("under: released once back to full speed", ev == BUDGET_RELEASED && b.workers == 4 && b.batch_cap == 0 &&
                                                         b.pause_ms == 0 && b.reason[0] == '\0');
    CHECK("under: workers climb one per decision", steps >= 3 + 9);
}

static void test_routes(void)
{
    struct budget b = {0};
    struct budget_input in = app(10.0, 11.0);
    in.baseline_ms[1] = 2.0;
    in.p99_ms[1] = 5.0;
    in.samples[1] = 10;
    budget_decide(&b, &in, 1000);
    CHECK("routes: one with too few samples says nothing", b.state != BUDGET_OVER);
    in.samples[1] = 200;
    budget_decide(&b, &in, 2000);
    CHECK("routes: the new release over its own budget engages", b.state == BUDGET_OVER && b.route == 1 &&
                                                                     strstr(b.reason, "new release") != NULL);
    struct budget quiet = {0};
    in = app(10.0, 100.0);
    in.samples[0] = 0;
    budget_decide(&quiet, &in, 1000);
    CHECK("routes: no traffic, nothing to keep", quiet.state == BUDGET_IDLE && quiet.workers == 4);
}

static void test_starved(void)
{
    struct budget b = {0};
    struct budget_input in = app(10.0, 50.0);
    double t = 1000;
    enum budget_event ev = BUDGET_NOTHING;
    int starved_at = 0;
    for (int i = 0; i < 60 && !starved_at; i++, t += BUDGET_EVAL_MS) {
        in.rows_done += 25; /* 100 rows/s */
        ev = budget_decide(&b, &in, t);
        if (ev == BUDGET_STARVED)
            starved_at = i;
    }
    CHECK("starved: at the floor, said once", starved_at > 0 && b.starved && b.batch_cap == 100 &&
                                                  b.pause_ms == BUDGET_PAUSE_MAX_MS);
    CHECK("starved: with the rate it gets", b.starved_rate > 90 && b.starved_rate < 110 &&
                                                strstr(b.reason, "rows/s") != NULL);
    CHECK("starved: not said twice", budget_decide(&b, &in, t + BUDGET_EVAL_MS) == BUDGET_NOTHING && b.starved);
    in.p99_ms[0] = 20.0;
    in.ratio = 3.0; /* widened live: 30 ms */
    CHECK("widened: under the new budget, no longer starved", budget_decide(&b, &in, t + 2 * BUDGET_EVAL_MS) ==
                                                                  BUDGET_UNSTARVED && !b.starved &&
                                                                  b.limit_ms[0] == 30.0);
}

static void test_gentle_start(void)
{
    struct budget b = {0};
    budget_start_gently(&b, 100);
    CHECK("gentle: one worker, the smallest batch", b.workers == 1 && budget_batch_rows(&b, 4000) == 100 &&
                                                        b.engaged && b.engagements == 1);
    struct budget_input in = app(10.0, 5.0);
    CHECK("gentle: the first decision under keeps it", budget_decide(&b, &in, 1000) == BUDGET_NOTHING &&
                                                           b.batch_cap == 151 && b.workers == 1 && b.engaged);
    double t = 1000;
    int released = 0;
    for (int i = 0; i < 40; i++)
        released += budget_decide(&b, &in, t += BUDGET_EVAL_MS) == BUDGET_RELEASED;
    CHECK("gentle: full speed within 40 decisions, released once", b.batch_cap == 0 && b.workers == 4 &&
                                                                        !b.engaged && released == 1);
}

static void test_floor(void)
{
    struct budget b = {0};
    struct budget_input in = app(1.0, 2.6);
    budget_decide(&b, &in, 1000);
    CHECK("no floor: a 1 ms app's limit is 2 ms, and 2.6 ms is over it", b.limit_ms[0] == 2.0 &&
                                                                         b.state == BUDGET_OVER);
    struct budget f = {0};
    in.floor_ms = 5;
    budget_decide(&f, &in, 1000);
    CHECK("a 5 ms floor: the limit is 5 ms, and 2.6 ms is within it", f.limit_ms[0] == 5.0 &&
                                                                      f.state == BUDGET_UNDER && !f.engaged);
    in = app(10.0, 12.0);
    in.floor_ms = 5;
    budget_decide(&f, &in, 2000);
    CHECK("a floor under the ratio's limit changes nothing", f.limit_ms[0] == 15.0);
    in.absolute_ms = 3;
    budget_decide(&f, &in, 3000);
    CHECK("an absolute limit is not raised by the floor", f.limit_ms[0] == 3.0);
}

/* Engaged, then a window with too few queries to judge (a slow app's
 * statements end few per window): held, not released, until the quiet
 * lasts BUDGET_IDLE_HOLD_MS. */
static void test_too_few_to_judge(void)
{
    struct budget b = {0};
    struct budget_input in = app(10.0, 40.0);
    in.batch_rows = in.min_rows = in.max_rows = 200;
    budget_decide(&b, &in, 1000);
    CHECK("thin: engaged at one worker", b.engaged && b.workers == 1 && b.batch_cap == 200);
    in.samples[0] = BUDGET_MIN_SAMPLES - 1;
    budget_decide(&b, &in, 1250);
    CHECK("thin: too few to judge holds", b.state == BUDGET_IDLE && b.workers == 1 && b.batch_cap == 200 &&
                                              b.pause_ms == BUDGET_PAUSE_MIN_MS && b.engaged &&
                                              strstr(b.reason, "holding") != NULL);
    in.samples[0] = 500;
    budget_decide(&b, &in, 1500);
    CHECK("thin: over again", b.state == BUDGET_OVER && b.workers == 1);
    in.samples[0] = 0;
    double t = 1500;
    while (t < 1500 + BUDGET_IDLE_HOLD_MS)
        budget_decide(&b, &in, t += BUDGET_EVAL_MS);
    CHECK("thin: still held just before BUDGET_IDLE_HOLD_MS", b.workers == 1 && b.engaged);
    budget_decide(&b, &in, t += BUDGET_EVAL_MS);
    CHECK("thin: steps back once the quiet lasts", b.batch_cap == 0 && b.pause_ms == BUDGET_PAUSE_MIN_MS &&
                                                        b.workers == 1 && b.reason[0] == '\0');
    budget_decide(&b, &in, t += BUDGET_EVAL_MS);
    CHECK("thin: and on, a step each decision", b.pause_ms == 0 && b.workers == 2);
}

static void test_slow_by_itself(void)
{
    struct budget b = {0};
    struct budget_input in = app(10.0, 40.0);
    CHECK("over with no quiet moments yet: engaged", budget_decide(&b, &in, 1000) == BUDGET_ENGAGED);
    in.quiet_p99_ms[0] = 38.0;
    in.quiet_samples[0] = BUDGET_MIN_SAMPLES - 1;
    CHECK("too few quiet samples say nothing", budget_decide(&b, &in, 1250) == BUDGET_NOTHING &&
                                                   b.app_slow_ms[0] == 0);
    long cap = b.batch_cap;
    double pause = b.pause_ms;
    in.quiet_samples[0] = 200;
    CHECK("as slow with no batch in flight: slow by itself", budget_decide(&b, &in, 1500) == BUDGET_APP_SLOW &&
                                                                 b.app_slow_ms[0] == 38.0 && b.app_slow_ms[1] == 0);
    CHECK("held, not tightened", b.batch_cap == cap && b.pause_ms == pause &&
                                     strstr(b.reason, "without the backfill too") != NULL);
    /* the caller takes it as the baseline: 1.5 x 38 is 57 ms, and 40 is within */
    in.baseline_ms[0] = 38.0;
    in.quiet_samples[0] = 0;
    budget_decide(&b, &in, 1750);
    CHECK("within the new baseline's budget", b.state != BUDGET_OVER && b.limit_ms[0] == 57.0);

    struct budget c = {0};
    in = app(10.0, 40.0);
    in.quiet_p99_ms[0] = 11.0; /* fast between batches: the backfill is the harm */
    in.quiet_samples[0] = 500;
    CHECK("fast without the backfill: the budget holds it back", budget_decide(&c, &in, 1000) == BUDGET_ENGAGED &&
                                                                     c.state == BUDGET_OVER);
    budget_decide(&c, &in, 1250);
    CHECK("and goes on holding it back", c.state == BUDGET_OVER && c.pause_ms == 2 * BUDGET_PAUSE_MIN_MS);
    struct budget a = {0};
    in = app(10.0, 40.0);
    in.absolute_ms = 20;
    in.quiet_p99_ms[0] = 38.0;
    in.quiet_samples[0] = 500;
    CHECK("an absolute limit is the operator's: no baseline to move", budget_decide(&a, &in, 1000) ==
                                                                            BUDGET_ENGAGED);
}

/* An app faster than the floor: the floor is its limit. Over it, the
 * batches shrink and the workers stay, until the batches are at their
 * smallest; under half of it, the cap climbs by the room left and the
 * workers climb beside it. */
static void test_fast_app_under_a_floor(void)
{
    struct budget b = {0};
    struct budget_input in = app(1.0, 1.0);
    in.floor_ms = 5;
    budget_start_gently(&b, 100);
    in.wanted_workers = 2;
    budget_decide(&b, &in, 1000);
    CHECK("floor: 1 ms of a 5 ms limit climbs by the room left, at most 4x", b.state == BUDGET_UNDER &&
                                                                               b.batch_cap == 400);
    CHECK("floor: and a worker beside the cap", b.workers == 2 && b.pause_ms == 0);
    in.p99_ms[0] = 3.5;
    budget_decide(&b, &in, 1250);
    CHECK("floor: over half of it, half as large again", b.batch_cap == 601);
    in.p99_ms[0] = 7.0;
    CHECK("floor: over it engages nothing new (engaged since the start)",
          budget_decide(&b, &in, 1500) == BUDGET_NOTHING && b.state == BUDGET_OVER);
    CHECK("floor: over, the batches halve, the workers stay, no pause", b.batch_cap == 300 && b.workers == 2 &&
                                                                           b.pause_ms == 0);
    budget_decide(&b, &in, 1750);
    budget_decide(&b, &in, 2000);
    CHECK("floor: at the smallest batch", b.batch_cap == 100 && b.workers == 2 && b.pause_ms == 0);
    budget_decide(&b, &in, 2250);
    CHECK("floor: over at the smallest batch: one worker and a pause", b.batch_cap == 100 && b.workers == 1 &&
                                                                           b.pause_ms == BUDGET_PAUSE_MIN_MS);
    in.p99_ms[0] = 1.0;
    budget_decide(&b, &in, 2500);
    budget_decide(&b, &in, 2750);
    CHECK("floor: under again, the pause gone, the cap climbing", b.pause_ms == 0 && b.batch_cap > 100);
    CHECK("floor: two workers were over: one short of them for a while", b.workers == 1);
    double t = 2750;
    while (t < 2250 + BUDGET_CROWD_HOLD_MS)
        budget_decide(&b, &in, t += BUDGET_EVAL_MS);
    budget_decide(&b, &in, t += BUDGET_EVAL_MS);
    CHECK("floor: and the worker back after BUDGET_CROWD_HOLD_MS", b.workers == 2);
}

int main(void)
{
    test_fast_app_under_a_floor();
    test_floor();
    test_slow_by_itself();
    test_too_few_to_judge();
    test_gentle_start();
    test_limits();
    test_over_and_back();
    test_routes();
    test_starved();
    return UNIT_RESULT();
}

/* Unit tests for the migration's lifecycle (migration_lifecycle.h): the
 * words and the SQL lists built from them, the one in-progress predicate
 * (switched included), every phase move allowed and forbidden, every
 * phase against every request, every waiting request answered exactly
 * once on every way out of a phase, and the route of each release. The
 * expectations are written out here on their own, not derived from the
 * module's tables. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migration_lifecycle.h"
#include "unit.h"

#define NPH MIG_NPHASES
#define B(p) (1u << (p))

/* Prints the first few details of a failing sweep, and counts them all. */
static int detail(int *bad, const char *fmt, const char *a, const char *b, const char *c, int x)
{
    if ((*bad)++ < 8) {
        printf("  ");
        printf(fmt, a, b, c, x);
        printf("\n");
    }
    return 0;
}

static const char *ph(int p)
{
    return mig_phase_word((enum mig_phase)p);
}

/* ---- words ---- */

static void test_words(void)
{
    static const char *const statuses[] = {"expanding", "backfilling", "active", "switched", "completed",
                                           "rolled_back", "failed"};
    int ok = MIG_NSTATUSES == 7;
    for (int st = 0; ok && st < MIG_NSTATUSES; st++)
        ok = !strcmp(mig_status_word((enum mig_status)st), statuses[st]) && mig_status_of_word(statuses[st]) == st;
    CHECK("words: every status has its word, and the word gives the status back", ok);
    CHECK("words: unknown, empty and NULL words are no status",
          mig_status_of_word("running") == -1 && mig_status_of_word("") == -1 && mig_status_of_word(NULL) == -1 &&
              mig_status_of_word("Active") == -1);
    CHECK("words: a status out of range has no word", !strcmp(mig_status_word((enum mig_status)42), "") &&
                                                          !strcmp(mig_status_word((enum mig_status)-1), ""));

    static const char *const phases[NPH] = {"idle", "expanding", "backfilling", "finishing", "active", "completing",
                                            "completed", "rolling_back", "rolled_back", "failed", "switched"};
    ok = 1;
    for (int p = 0; p < NPH; p++)
        ok = ok && !strcmp(ph(p), phases[p]) && mig_phase_of_word(phases[p]) == p &&
             !strcmp(mig_phase_words()[p], phases[p]);
    CHECK("words: every phase has its word in the metrics' order, and back", ok);
    CHECK("words: unknown phases", mig_phase_of_word("paused") == -1 && mig_phase_of_word(NULL) == -1 &&
                                       !strcmp(ph(NPH), ""));
    /* a phase that is a status is spelled as the status is */
    ok = 1;
    for (int st = 0; st < MIG_NSTATUSES; st++)
        ok = ok && mig_status_word((enum mig_status)st) == ph(mig_phase_of_status((enum mig_status)st));
    CHECK("words: a status and its phase share one spelling (the same string)", ok);
    CHECK("words: requests", !strcmp(mig_request_word(MIG_REQ_ROLLBACK), "rollback") &&
                                 !strcmp(mig_request_word(MIG_REQ_REVERT), "revert") &&
                                 !strcmp(mig_request_word((enum mig_request)99), ""));
}

/* ---- the SQL lists ---- */

static void test_sql_lists(void)
{
    char out[MIG_STATUS_SQL_LIST_MAX];
    int n = mig_status_sql_list(MIG_SET_EVERY, out, sizeof out);
    CHECK("sql: the check constraint lists every status, in order",
          n > 0 && (size_t)n == strlen(out) &&
              !strcmp(out, "'expanding','backfilling','active','switched','completed','rolled_back','failed'"));
    mig_status_sql_list(MIG_SET_IN_PROGRESS, out, sizeof out);
    CHECK("sql: in progress is expanding, backfilling, active and switched",
          !strcmp(out, "'expanding','backfilling','active','switched'"));
    char arr[MIG_STATUS_SQL_LIST_MAX];
    CHECK("sql: in progress as a text[] literal",
          mig_status_array_literal(MIG_SET_IN_PROGRESS, arr, sizeof arr) > 0 &&
              !strcmp(arr, "{expanding,backfilling,active,switched}"));
    CHECK("sql: a text[] literal too long for its buffer", mig_status_array_literal(MIG_SET_EVERY, arr, 12) == -1 &&
                                                               arr[0] == '\0');
    mig_status_sql_list(MIG_SET_ENDED, out, sizeof out);
    CHECK("sql: ended is completed, rolled back and failed", !strcmp(out, "'completed','rolled_back','failed'"));
    char small[20] = "x";
    CHECK("sql: a buffer too small gives -1 and an empty list",
          mig_status_sql_list(MIG_SET_EVERY, small, sizeof small) == -1 && small[0] == '\0');
    CHECK("sql: no buffer", mig_status_sql_list(MIG_SET_EVERY, NULL, 10) == -1 &&
                                mig_status_sql_list(MIG_SET_EVERY, out, 0) == -1);
    /* every status's word is an SQL literal needing no escape */
    int ok = 1;
    for (int st = 0; st < MIG_NSTATUSES; st++)
        ok = ok && !strpbrk(mig_status_word((enum mig_status)st), "'\\\"");
    CHECK("sql: the words need no quoting", ok);
}

/* ---- in progress ---- */

static void test_in_progress(void)
{
    CHECK("in progress: switched is (a finalize or a revert is still to come under the fleet's hold)",
          mig_status_in_progress(MIG_ST_SWITCHED) && mig_word_in_progress("switched"));
    CHECK("in progress: expanding, backfilling, active are",
          mig_status_in_progress(MIG_ST_EXPANDING) && mig_status_in_progress(MIG_ST_BACKFILLING) &&
              mig_status_in_progress(MIG_ST_ACTIVE));
    CHECK("in progress: completed, rolled back and failed are not",
          !mig_status_in_progress(MIG_ST_COMPLETED) && !mig_status_in_progress(MIG_ST_ROLLED_BACK) &&
              !mig_status_in_progress(MIG_ST_FAILED));
    CHECK("in progress: a word that is no status is not", !mig_word_in_progress("") && !mig_word_in_progress(NULL) &&
                                                                !mig_word_in_progress("finishing"));
    unsigned want = B(MIG_PH_EXPANDING) | B(MIG_PH_BACKFILLING) | B(MIG_PH_FINISHING) | B(MIG_PH_ACTIVE) |
                    B(MIG_PH_COMPLETING) | B(MIG_PH_ROLLING_BACK) | B(MIG_PH_SWITCHED);
    int ok = 1;
    for (int p = 0; p < NPH; p++)
        ok = ok && !!mig_phase_in_progress((enum mig_phase)p) == !!(want & B(p));
    CHECK("in progress: the runner's phases (its own steps included)", ok);
    /* the phase predicate agrees with the status one wherever a phase has a status */
    ok = 1;
    for (int p = 0; p < NPH; p++) {
        int st = mig_phase_status((enum mig_phase)p, MIG_PH_ACTIVE);
        if (st >= 0)
            ok = ok && !!mig_phase_in_progress((enum mig_phase)p) == !!mig_status_in_progress((enum mig_status)st);
    }
    CHECK("in progress: one definition, phases follow their status", ok);
}

static void test_phase_status(void)
{
    int ok = 1;
    for (int st = 0; st < MIG_NSTATUSES; st++)
        ok = ok && mig_phase_status(mig_phase_of_status((enum mig_status)st), MIG_PH_ACTIVE) == st;
    CHECK("status: reading a status and writing its phase's gives it back", ok);
    CHECK("status: finishing keeps backfilling", mig_phase_status(MIG_PH_FINISHING, MIG_PH_ACTIVE) == MIG_ST_BACKFILLING);
    CHECK("status: a cutover keeps what it started from until it commits",
          mig_phase_status(MIG_PH_COMPLETING, MIG_PH_ACTIVE) == MIG_ST_ACTIVE &&
              mig_phase_status(MIG_PH_COMPLETING, MIG_PH_SWITCHED) == MIG_ST_SWITCHED);
    CHECK("status: idle and rolling back write none", mig_phase_status(MIG_PH_IDLE, MIG_PH_ACTIVE) == -1 &&
                                                          mig_phase_status(MIG_PH_ROLLING_BACK, MIG_PH_ACTIVE) == -1);
    CHECK("phases: the steps that run on the worker",
          mig_phase_runs_step(MIG_PH_EXPANDING) && mig_phase_runs_step(MIG_PH_FINISHING) &&
              mig_phase_runs_step(MIG_PH_ROLLING_BACK) && !mig_phase_runs_step(MIG_PH_BACKFILLING) &&
              !mig_phase_runs_step(MIG_PH_COMPLETING) && !mig_phase_runs_step(MIG_PH_ACTIVE));
    unsigned past = B(MIG_PH_FINISHING) | B(MIG_PH_ACTIVE) | B(MIG_PH_COMPLETING) | B(MIG_PH_COMPLETED) |
                    B(MIG_PH_SWITCHED);
    ok = 1;
    for (int p = 0; p < NPH; p++)
        ok = ok && !!mig_phase_past_backfill((enum mig_phase)p) == !!(past & B(p));
    CHECK("phases: past the backfill", ok);
}

/* ---- moves ---- */

/* The lifecycle as the engine README draws it. */
static unsigned expected_work(int from)
{
    unsigned fail = B(MIG_PH_FAILED); /* a failure may end any phase */
    switch (from) {
    case MIG_PH_IDLE: return fail | B(MIG_PH_EXPANDING);
    case MIG_PH_EXPANDING: return fail | B(MIG_PH_BACKFILLING) | B(MIG_PH_ROLLING_BACK);
    case MIG_PH_BACKFILLING: return fail | B(MIG_PH_FINISHING) | B(MIG_PH_ROLLING_BACK);
    case MIG_PH_FINISHING: return fail | B(MIG_PH_ACTIVE) | B(MIG_PH_BACKFILLING) | B(MIG_PH_ROLLING_BACK);
    case MIG_PH_ACTIVE: return fail | B(MIG_PH_COMPLETING) | B(MIG_PH_ROLLING_BACK);
    case MIG_PH_COMPLETING:
        return fail | B(MIG_PH_COMPLETED) | B(MIG_PH_SWITCHED) | B(MIG_PH_ACTIVE) | B(MIG_PH_ROLLING_BACK);
    case MIG_PH_COMPLETED: return fail | B(MIG_PH_EXPANDING);
    case MIG_PH_ROLLING_BACK: return fail | B(MIG_PH_ROLLED_BACK);
    case MIG_PH_ROLLED_BACK: return fail | B(MIG_PH_EXPANDING);
    case MIG_PH_FAILED: return fail | B(MIG_PH_EXPANDING) | B(MIG_PH_ROLLING_BACK);
    case MIG_PH_SWITCHED: return fail | B(MIG_PH_COMPLETING);
    default: return 0;
    }
}

/* Read from the table: any status, except while this proxy's own step
 * (validations, a rollback) owns the row. */
static unsigned expected_record(int from)
{
    unsigned statuses = B(MIG_PH_EXPANDING) | B(MIG_PH_BACKFILLING) | B(MIG_PH_ACTIVE) | B(MIG_PH_SWITCHED) |
                        B(MIG_PH_COMPLETED) | B(MIG_PH_ROLLED_BACK) | B(MIG_PH_FAILED);
    return from == MIG_PH_FINISHING || from == MIG_PH_ROLLING_BACK ? 0 : statuses;
}

static void test_moves(void)
{
    int bad = 0, allowed = 0, forbidden = 0;
    for (int from = 0; from < NPH; from++)
        for (int to = 0; to < NPH; to++) {
            int w = mig_move_allowed((enum mig_phase)from, (enum mig_phase)to, MIG_BY_WORK);
            int rec = mig_move_allowed((enum mig_phase)from, (enum mig_phase)to, MIG_BY_RECORD);
            if (w != !!(expected_work(from) & B(to)))
                detail(&bad, "work %s -> %s: %s%d", ph(from), ph(to), "allowed=", w);
            if (rec != !!(expected_record(from) & B(to)))
                detail(&bad, "record %s -> %s: %s%d", ph(from), ph(to), "allowed=", rec);
            allowed += w + rec;
            forbidden += !w + !rec;
        }
    printf("  moves: %d allowed, %d forbidden\n", allowed, forbidden);
    CHECK("moves: every allowed and every forbidden move, by work and read from the table", bad == 0);
    CHECK("moves: nothing goes back to idle", !mig_move_allowed(MIG_PH_ACTIVE, MIG_PH_IDLE, MIG_BY_WORK) &&
                                                  !mig_move_allowed(MIG_PH_ACTIVE, MIG_PH_IDLE, MIG_BY_RECORD));
    CHECK("moves: a rolled-back migration never becomes active again by itself",
          !mig_move_allowed(MIG_PH_ROLLED_BACK, MIG_PH_ACTIVE, MIG_BY_WORK));
    CHECK("moves: a completed one cannot be rolled back",
          !mig_move_allowed(MIG_PH_COMPLETED, MIG_PH_ROLLING_BACK, MIG_BY_WORK));
    CHECK("moves: the table cannot move a runner whose rollback runs",
          !mig_move_allowed(MIG_PH_ROLLING_BACK, MIG_PH_ACTIVE, MIG_BY_RECORD));
    int owners = 0, owners_move = 0;
    for (int p = 0; p < NPH; p++) {
        owners += mig_phase_owns_record((enum mig_phase)p);
        for (int to = 0; mig_phase_owns_record((enum mig_phase)p) && to < NPH; to++)
            owners_move += mig_move_allowed((enum mig_phase)p, (enum mig_phase)to, MIG_BY_RECORD);
    }
    CHECK("moves: finishing and rolling_back own the state row; no status read back moves them (not even failed)",
          owners == 2 && mig_phase_owns_record(MIG_PH_FINISHING) && mig_phase_owns_record(MIG_PH_ROLLING_BACK) &&
              owners_move == 0 && !mig_move_allowed(MIG_PH_ROLLING_BACK, MIG_PH_FAILED, MIG_BY_RECORD));
    CHECK("moves: out of range and unknown causes are refused",
          !mig_move_allowed((enum mig_phase)NPH, MIG_PH_FAILED, MIG_BY_WORK) &&
              !mig_move_allowed(MIG_PH_IDLE, (enum mig_phase)-1, MIG_BY_WORK) &&
              !mig_move_allowed(MIG_PH_IDLE, MIG_PH_EXPANDING, (enum mig_cause)7));
}

/* ---- what follows an event: written out, and always an allowed move ---- */

static void test_after(void)
{
    int bad = 0;
    struct {
        int p, ev, cut, from, want;
    } cases[] = {
        {MIG_PH_EXPANDING, MIG_EV_STEP_DONE, 0, 0, MIG_PH_BACKFILLING},
        {MIG_PH_FINISHING, MIG_EV_STEP_DONE, 0, 0, MIG_PH_ACTIVE},
        {MIG_PH_ROLLING_BACK, MIG_EV_STEP_DONE, 0, 0, MIG_PH_ROLLED_BACK},
        {MIG_PH_ACTIVE, MIG_EV_STEP_DONE, 0, 0, MIG_PH_ACTIVE},
        {MIG_PH_EXPANDING, MIG_EV_STEP_FAILED, 0, 0, MIG_PH_FAILED},
        {MIG_PH_ROLLING_BACK, MIG_EV_STEP_FAILED, 0, 0, MIG_PH_FAILED},
        {MIG_PH_FINISHING, MIG_EV_LOCK_LOST, 0, 0, MIG_PH_BACKFILLING},
        {MIG_PH_EXPANDING, MIG_EV_LOCK_LOST, 0, 0, MIG_PH_EXPANDING},
        {MIG_PH_COMPLETING, MIG_EV_CUTOVER_COMMITTED, MIG_CUT_CONTRACT, MIG_PH_ACTIVE, MIG_PH_COMPLETED},
        {MIG_PH_COMPLETING, MIG_EV_CUTOVER_COMMITTED, MIG_CUT_CONTRACT, MIG_PH_SWITCHED, MIG_PH_COMPLETED},
        {MIG_PH_COMPLETING, MIG_EV_CUTOVER_COMMITTED, MIG_CUT_SWITCH, MIG_PH_ACTIVE, MIG_PH_SWITCHED},
        {MIG_PH_COMPLETING, MIG_EV_CUTOVER_COMMITTED, MIG_CUT_REVERT, MIG_PH_SWITCHED, MIG_PH_ROLLING_BACK},
        {MIG_PH_COMPLETING, MIG_EV_CUTOVER_ABANDONED, MIG_CUT_CONTRACT, MIG_PH_ACTIVE, MIG_PH_ACTIVE},
        {MIG_PH_COMPLETING, MIG_EV_CUTOVER_ABANDONED, MIG_CUT_REVERT, MIG_PH_SWITCHED, MIG_PH_SWITCHED},
        {MIG_PH_ACTIVE, MIG_EV_CUTOVER_COMMITTED, MIG_CUT_CONTRACT, MIG_PH_ACTIVE, MIG_PH_ACTIVE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        enum mig_phase got = mig_phase_after((enum mig_phase)cases[i].p, (enum mig_event)cases[i].ev,
                                             (enum mig_cut)cases[i].cut, (enum mig_phase)cases[i].from);
        if ((int)got != cases[i].want)
            detail(&bad, "after %s%s: got %s, want phase %d", ph(cases[i].p), "", ph((int)got), cases[i].want);
    }
    CHECK("after: what follows each event, written out", bad == 0);
    bad = 0;
    for (int p = 0; p < NPH; p++)
        for (int ev = 0; ev < MIG_NEVENTS; ev++)
            for (int cut = MIG_CUT_CONTRACT; cut <= MIG_CUT_REVERT; cut++) {
                int from = cut == MIG_CUT_CONTRACT ? MIG_PH_ACTIVE : MIG_PH_SWITCHED;
                /* complete with a revert window starts from active; finalize and revert from switched */
                if (cut == MIG_CUT_SWITCH)
                    from = MIG_PH_ACTIVE;
                enum mig_phase to = mig_phase_after((enum mig_phase)p, (enum mig_event)ev, (enum mig_cut)cut,
                                                    (enum mig_phase)from);
                if ((int)to != p && !mig_move_allowed((enum mig_phase)p, to, MIG_BY_WORK))
                    detail(&bad, "after %s: %s is a forbidden move%s%d", ph(p), ph((int)to), "", ev);
            }
    CHECK("after: every phase x event x cutover answers an allowed move or none", bad == 0);
}

/* ---- admission: every phase x request ---- */

static int expected_admit(int p, int q, const struct mig_facts *f)
{
    unsigned in_progress = B(MIG_PH_EXPANDING) | B(MIG_PH_BACKFILLING) | B(MIG_PH_FINISHING) | B(MIG_PH_ACTIVE) |
                           B(MIG_PH_COMPLETING) | B(MIG_PH_ROLLING_BACK) | B(MIG_PH_SWITCHED);
    unsigned beside = B(MIG_PH_EXPANDING) | B(MIG_PH_BACKFILLING) | B(MIG_PH_FINISHING) | B(MIG_PH_ACTIVE) |
                      B(MIG_PH_SWITCHED);
    switch (q) {
    case MIG_REQ_START: /* beside one in flight, but not during its cutover or rollback */
        return f->start_checking || ((in_progress & ~beside) & B(p)) || (p == MIG_PH_COMPLETED && f->step_running)
                   ? 409 : 0;
    case MIG_REQ_STATUS: return p == MIG_PH_IDLE ? 404 : 0;
    case MIG_REQ_COMPLETE: return p == MIG_PH_IDLE ? 404 : p == MIG_PH_ACTIVE ? 0 : 409;
    case MIG_REQ_ROLLBACK:
        if (p == MIG_PH_IDLE)
            return 404;
        if (f->rollback_asked)
            return 409;
        if (p == MIG_PH_EXPANDING || p == MIG_PH_FINISHING)
            return f->following || !f->step_running ? 409 : 0;
        return p == MIG_PH_BACKFILLING || p == MIG_PH_ACTIVE || p == MIG_PH_FAILED ? 0 : 409;
    case MIG_REQ_FINALIZE:
    case MIG_REQ_REVERT: return p == MIG_PH_SWITCHED ? 0 : p == MIG_PH_IDLE ? 404 : 409;
    default: return 400;
    }
}

static void test_admission(void)
{
    int bad = 0, cases = 0;
    for (int p = 0; p < NPH; p++)
        for (int q = 0; q < MIG_NREQUESTS; q++)
            for (int bits = 0; bits < 16; bits++) {
                struct mig_facts f = {.name = "0007_demo", .step_running = bits & 1, .following = !!(bits & 2),
                                      .rollback_asked = !!(bits & 4), .start_checking = !!(bits & 8)};
                char why[600];
                int got = mig_admit((enum mig_phase)p, (enum mig_request)q, &f, why, sizeof why);
                int want = expected_admit(p, q, &f);
                cases++;
                if (got != want)
                    detail(&bad, "%s %s (facts %s): got %d", mig_request_word((enum mig_request)q), ph(p), "", got);
                else if (got && !why[0])
                    detail(&bad, "%s %s%s: refused %d without saying why", mig_request_word((enum mig_request)q),
                           ph(p), "", got);
                else if (got == 409 && !strstr(why, "0007_demo") && !strstr(why, "a start is being checked"))
                    detail(&bad, "%s %s: the refusal does not name the migration: %s%d",
                           mig_request_word((enum mig_request)q), ph(p), why, 0);
                else if (!got && why[0])
                    detail(&bad, "%s %s: admitted with a reason: %s%d", mig_request_word((enum mig_request)q), ph(p),
                           why, 0);
            }
    printf("  admission: %d cases (phase x request x facts)\n", cases);
    CHECK("admission: every phase x request, as written out here", bad == 0);

    char why[300];
    struct mig_facts follows = {.name = "0007_demo", .following = 1};
    CHECK("admission: complete of a backfill another engine runs is a moment's gap, asked again",
          mig_admit(MIG_PH_BACKFILLING, MIG_REQ_COMPLETE, &follows, why, sizeof why) == 409 &&
              strstr(why, "try again") && mig_admit_retry_ms(MIG_PH_BACKFILLING, MIG_REQ_COMPLETE, &follows) > 0 &&
              mig_admit_retry_ms(MIG_PH_BACKFILLING, MIG_REQ_COMPLETE, NULL) == 0 &&
              mig_admit_retry_ms(MIG_PH_FINISHING, MIG_REQ_COMPLETE, &follows) == 0);
    CHECK("admission: complete while backfilling says to let it finish",
          mig_admit(MIG_PH_BACKFILLING, MIG_REQ_COMPLETE, NULL, why, sizeof why) == 409 &&
              strstr(why, "let the backfill finish"));
    struct mig_facts post_running = {.name = "0007_demo", .step_running = 1};
    CHECK("admission: start while a completed migration's steps after its contract run says to wait for them",
          mig_admit(MIG_PH_COMPLETED, MIG_REQ_START, &post_running, why, sizeof why) == 409 &&
              strstr(why, "steps after migration 0007_demo's contract"));
    struct mig_facts a1 = {.name = "a1"};
    CHECK("admission: a second start goes beside the first, in each phase but its cutover and rollback",
          mig_admit(MIG_PH_ACTIVE, MIG_REQ_START, &a1, why, sizeof why) == 0 && mig_start_beside(MIG_PH_ACTIVE) &&
              mig_start_beside(MIG_PH_BACKFILLING) && mig_start_beside(MIG_PH_EXPANDING) &&
              mig_start_beside(MIG_PH_SWITCHED) && !mig_start_beside(MIG_PH_COMPLETING) &&
              !mig_start_beside(MIG_PH_ROLLING_BACK) && !mig_start_beside(MIG_PH_IDLE) &&
              !mig_start_beside(MIG_PH_FAILED) && !mig_start_beside(MIG_PH_COMPLETED));
    CHECK("admission: a start during the cutover of the one in flight waits it out",
          mig_admit(MIG_PH_COMPLETING, MIG_REQ_START, &a1, why, sizeof why) == 409 &&
              strstr(why, "migration a1 is completing: a migration starts beside it once that ends"));
    CHECK("admission: rollback once switched points at revert",
          mig_admit(MIG_PH_SWITCHED, MIG_REQ_ROLLBACK, NULL, why, sizeof why) == 409 &&
              strstr(why, "pgtandem migrate revert"));
    CHECK("admission: revert before complete points at rollback",
          mig_admit(MIG_PH_ACTIVE, MIG_REQ_REVERT, NULL, why, sizeof why) == 409 && strstr(why, "roll it back"));
    CHECK("admission: no facts, no name, no buffer",
          mig_admit(MIG_PH_ACTIVE, MIG_REQ_COMPLETE, NULL, NULL, 0) == 0 &&
              mig_admit(MIG_PH_IDLE, MIG_REQ_COMPLETE, NULL, NULL, 0) == 404);
    CHECK("admission: a long name is cut, not overrun",
          mig_admit(MIG_PH_COMPLETED, MIG_REQ_ROLLBACK,
                    &(struct mig_facts){.name = "a_name_much_longer_than_the_buffer_it_is_written_to"}, why, 16) == 409 &&
              strlen(why) == 15);
    CHECK("admission: an unknown request or phase", mig_admit(MIG_PH_ACTIVE, (enum mig_request)42, NULL, NULL, 0) == 400 &&
                                                       mig_admit((enum mig_phase)99, MIG_REQ_STATUS, NULL, NULL, 0) == 500);
}

/* ---- waiting requests ---- */

static int may_wait_expected(int w, int p)
{
    if (w == MIG_WAIT_COMPLETE)
        return p == MIG_PH_COMPLETING;
    return p == MIG_PH_EXPANDING || p == MIG_PH_BACKFILLING || p == MIG_PH_FINISHING || p == MIG_PH_ACTIVE ||
           p == MIG_PH_FAILED || p == MIG_PH_ROLLING_BACK;
}

/* A move keeps a request waiting only into the step it waits for: a
 * rollback into the rollback, or through the backfill's batch in flight
 * that it waits out; every other move answers (or hands a revert's
 * complete to its rollback). */
static int may_be_kept(int w, int to, const struct mig_wait_facts *f)
{
    return w == MIG_WAIT_ROLLBACK && (to == MIG_PH_ROLLING_BACK || (to == MIG_PH_BACKFILLING && f->stopping_backfill));
}

static int move_allowed_any(int from, int to)
{
    return mig_move_allowed((enum mig_phase)from, (enum mig_phase)to, MIG_BY_WORK) ||
           mig_move_allowed((enum mig_phase)from, (enum mig_phase)to, MIG_BY_RECORD);
}

static void facts_of(int bits, struct mig_wait_facts *f)
{
    memset(f, 0, sizeof *f);
    f->cut = (enum mig_cut)(bits % 3);
    f->error = !!(bits & 4);
    f->db_unavailable = !!(bits & 8);
    f->stopping_backfill = !!(bits & 16);
    f->refused = !!(bits & 32);
}

/* Every allowed move out of every phase, with every set of waiters that
 * may wait there and every fact: each waiter is answered, or keeps
 * waiting where it may wait, or (a revert's complete) becomes the
 * rollback's waiter; nobody absent is answered. */
static void test_every_way_out(void)
{
    int bad = 0, moves = 0;
    for (int w = 0; w < MIG_NWAITERS; w++)
        for (int p = 0; p < NPH; p++)
            if (!!mig_waiter_may_wait((enum mig_waiter)w, (enum mig_phase)p) != may_wait_expected(w, p))
                detail(&bad, "may_wait %s in %s%s: %d", w ? "rollback" : "complete", ph(p), "", 0);
    for (int from = 0; from < NPH; from++)
        for (int to = 0; to < NPH; to++) {
            if (!move_allowed_any(from, to))
                continue;
            for (int set = 0; set < 4; set++) {
                int present[MIG_NWAITERS] = {set & 1, !!(set & 2)};
                if ((present[0] && !may_wait_expected(MIG_WAIT_COMPLETE, from)) ||
                    (present[1] && !may_wait_expected(MIG_WAIT_ROLLBACK, from)))
                    continue;
                for (int bits = 0; bits < 64; bits++) {
                    struct mig_wait_facts f;
                    struct mig_answers a;
                    facts_of(bits, &f);
                    mig_waiters_on_move((enum mig_phase)from, (enum mig_phase)to, present, &f, &a);
                    moves++;
                    for (int w = 0; w < MIG_NWAITERS; w++) {
                        int st = a.status[w];
                        int kept = present[w] && !st && !(w == MIG_WAIT_COMPLETE && a.complete_becomes_rollback);
                        if (!present[w] && st && !(w == MIG_WAIT_ROLLBACK && a.complete_becomes_rollback))
                            detail(&bad, "%s -> %s: %s answered though absent (%d)", ph(from), ph(to),
                                   w ? "rollback" : "complete", st);
                        if (st && st != 200 && st != 409 && st != 500 && st != 503)
                            detail(&bad, "%s -> %s: %s answered %d", ph(from), ph(to), w ? "rollback" : "complete",
                                   st);
                        if (kept && (!may_wait_expected(w, to) || !may_be_kept(w, to, &f)))
                            detail(&bad, "%s -> %s: %s left waiting (bits %d)", ph(from), ph(to),
                                   w ? "rollback" : "complete", bits);
                        if (present[w] && !kept && may_be_kept(w, to, &f) && !a.complete_becomes_rollback)
                            detail(&bad, "%s -> %s: %s answered before its step ran (bits %d)", ph(from), ph(to),
                                   w ? "rollback" : "complete", bits);
                    }
                    if (a.complete_becomes_rollback &&
                        (!present[MIG_WAIT_COMPLETE] || present[MIG_WAIT_ROLLBACK] || a.status[MIG_WAIT_COMPLETE] ||
                         to != MIG_PH_ROLLING_BACK || f.cut != MIG_CUT_REVERT))
                        detail(&bad, "%s -> %s: a complete became a rollback out of place%s%d", ph(from), ph(to), "",
                               bits);
                }
            }
        }
    printf("  waiters: %d moves with waiters and facts\n", moves);
    CHECK("waiters: on every way out of every phase, answered or rightly kept", bad == 0);
}

/* Random walks through allowed moves from every phase a waiter may wait
 * in: the waiter is answered at most once, and exactly once by the time
 * the walk reaches a phase where it cannot wait. */
static void test_walks(void)
{
    int bad = 0, walks = 0;
    srand(11);
    for (int start = 0; start < NPH; start++)
        for (int w0 = 0; w0 < MIG_NWAITERS; w0++) {
            if (!may_wait_expected(w0, start))
                continue;
            for (int n = 0; n < 400; n++) {
                int present[MIG_NWAITERS] = {0, 0}, answered[MIG_NWAITERS] = {0, 0};
                present[w0] = 1;
                int p = start;
                struct mig_wait_facts f;
                facts_of(rand() % 64, &f);
                int steps = 0;
                while ((present[0] || present[1]) && steps++ < 40) {
                    int to, tries = 0;
                    do
                        to = rand() % NPH;
                    while (!move_allowed_any(p, to) && ++tries < 1000);
                    if (tries >= 1000)
                        break;
                    if (rand() % 4 == 0)
                        facts_of(rand() % 64, &f);
                    struct mig_answers a;
                    mig_waiters_on_move((enum mig_phase)p, (enum mig_phase)to, present, &f, &a);
                    for (int w = 0; w < MIG_NWAITERS; w++)
                        if (a.status[w]) {
                            answered[w]++;
                            present[w] = 0;
                        }
                    if (a.complete_becomes_rollback) {
                        present[MIG_WAIT_COMPLETE] = 0;
                        present[MIG_WAIT_ROLLBACK] = 1;
                        answered[MIG_WAIT_ROLLBACK] = answered[MIG_WAIT_COMPLETE]; /* the same request */
                    }
                    p = to;
                }
                walks++;
                int total = answered[0] + answered[1];
                if (total > 1)
                    detail(&bad, "walk from %s: answered %s%s%d times", ph(start), "", "", total);
                if (!present[0] && !present[1] && total != 1)
                    detail(&bad, "walk from %s: ended in %s unanswered%s%d", ph(start), ph(p), "", total);
                for (int w = 0; w < MIG_NWAITERS; w++)
                    if (present[w] && !may_wait_expected(w, p))
                        detail(&bad, "walk from %s: waits in %s, where it cannot%s%d", ph(start), ph(p), "", w);
            }
        }
    printf("  walks: %d\n", walks);
    CHECK("waiters: every walk answers each request exactly once", bad == 0);
}

static int answer_of(int from, int to, int w, const struct mig_wait_facts *f)
{
    int present[MIG_NWAITERS] = {w == MIG_WAIT_COMPLETE, w == MIG_WAIT_ROLLBACK};
    struct mig_answers a;
    mig_waiters_on_move((enum mig_phase)from, (enum mig_phase)to, present, f, &a);
    return a.complete_becomes_rollback ? -1 : a.status[w];
}

static void test_answers(void)
{
    struct mig_wait_facts f = {0};
    f.cut = MIG_CUT_CONTRACT;
    CHECK("answers: complete committed: 200", answer_of(MIG_PH_COMPLETING, MIG_PH_COMPLETED, MIG_WAIT_COMPLETE, &f) == 200);
    CHECK("answers: complete refused (back to active): 409",
          answer_of(MIG_PH_COMPLETING, MIG_PH_ACTIVE, MIG_WAIT_COMPLETE, &f) == 409);
    CHECK("answers: complete failed: 500", answer_of(MIG_PH_COMPLETING, MIG_PH_FAILED, MIG_WAIT_COMPLETE, &f) == 500);
    f.db_unavailable = 1;
    CHECK("answers: complete with the database away: 503",
          answer_of(MIG_PH_COMPLETING, MIG_PH_ACTIVE, MIG_WAIT_COMPLETE, &f) == 503);
    f.db_unavailable = 0;
    CHECK("answers: a finalize that went back to switched: 409",
          answer_of(MIG_PH_COMPLETING, MIG_PH_SWITCHED, MIG_WAIT_COMPLETE, &f) == 409);
    f.cut = MIG_CUT_SWITCH;
    CHECK("answers: a switch committed: 200", answer_of(MIG_PH_COMPLETING, MIG_PH_SWITCHED, MIG_WAIT_COMPLETE, &f) == 200);
    f.error = 1;
    CHECK("answers: back to switched with an error: 409",
          answer_of(MIG_PH_COMPLETING, MIG_PH_SWITCHED, MIG_WAIT_COMPLETE, &f) == 409);
    f.error = 0;
    f.cut = MIG_CUT_REVERT;
    CHECK("answers: a revert's complete waits for its rollback",
          answer_of(MIG_PH_COMPLETING, MIG_PH_ROLLING_BACK, MIG_WAIT_COMPLETE, &f) == -1);
    CHECK("answers: rolled back: 200", answer_of(MIG_PH_ROLLING_BACK, MIG_PH_ROLLED_BACK, MIG_WAIT_ROLLBACK, &f) == 200);
    CHECK("answers: the rollback failed: 500", answer_of(MIG_PH_ROLLING_BACK, MIG_PH_FAILED, MIG_WAIT_ROLLBACK, &f) == 500);
    f.refused = 1;
    CHECK("answers: the rollback refused: 409", answer_of(MIG_PH_ROLLING_BACK, MIG_PH_FAILED, MIG_WAIT_ROLLBACK, &f) == 409);
    f.refused = 0;
    CHECK("answers: a rollback waits through the stopped step",
          answer_of(MIG_PH_EXPANDING, MIG_PH_ROLLING_BACK, MIG_WAIT_ROLLBACK, &f) == 0);
    f.stopping_backfill = 1;
    CHECK("answers: ... and through the batch in flight",
          answer_of(MIG_PH_BACKFILLING, MIG_PH_BACKFILLING, MIG_WAIT_ROLLBACK, &f) == 0);
    f.stopping_backfill = 0;
    CHECK("answers: a rollback whose step went on without it is told so",
          answer_of(MIG_PH_FINISHING, MIG_PH_ACTIVE, MIG_WAIT_ROLLBACK, &f) == 500);
    int ok = 1;
    for (int p = 0; p < NPH; p++) {
        int want = mig_phase_runs_step((enum mig_phase)p) ? 202 : 0;
        ok = ok && mig_waiter_on_blocked(MIG_WAIT_ROLLBACK, (enum mig_phase)p) == want &&
             mig_waiter_on_blocked(MIG_WAIT_COMPLETE, (enum mig_phase)p) == 0;
    }
    CHECK("answers: a rollback blocked by another session's lock is answered 202 at once; a complete waits", ok);
}

/* ---- routes ---- */

static void test_routes(void)
{
    static const struct {
        int p, from, new_release, old_release;
    } want[] = {
        {MIG_PH_IDLE, MIG_PH_ACTIVE, MIG_SHAPE_NONE, MIG_SHAPE_NONE},
        {MIG_PH_EXPANDING, MIG_PH_ACTIVE, MIG_SHAPE_OLD, MIG_SHAPE_OLD},
        {MIG_PH_BACKFILLING, MIG_PH_ACTIVE, MIG_SHAPE_NEW, MIG_SHAPE_OLD},
        {MIG_PH_FINISHING, MIG_PH_ACTIVE, MIG_SHAPE_NEW, MIG_SHAPE_OLD},
        {MIG_PH_ACTIVE, MIG_PH_ACTIVE, MIG_SHAPE_NEW, MIG_SHAPE_OLD},
        {MIG_PH_COMPLETING, MIG_PH_ACTIVE, MIG_SHAPE_NEW, MIG_SHAPE_OLD},
        {MIG_PH_COMPLETING, MIG_PH_SWITCHED, MIG_SHAPE_NEW, MIG_SHAPE_NEW},
        {MIG_PH_COMPLETED, MIG_PH_ACTIVE, MIG_SHAPE_NONE, MIG_SHAPE_NONE},
        {MIG_PH_ROLLING_BACK, MIG_PH_ACTIVE, MIG_SHAPE_OLD, MIG_SHAPE_OLD},
        {MIG_PH_ROLLED_BACK, MIG_PH_ACTIVE, MIG_SHAPE_NONE, MIG_SHAPE_NONE},
        {MIG_PH_FAILED, MIG_PH_ACTIVE, MIG_SHAPE_NONE, MIG_SHAPE_NONE},
        {MIG_PH_SWITCHED, MIG_PH_ACTIVE, MIG_SHAPE_NEW, MIG_SHAPE_NEW},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        enum mig_shape n = 9, o = 9;
        mig_routes((enum mig_phase)want[i].p, (enum mig_phase)want[i].from, &n, &o);
        if ((int)n != want[i].new_release || (int)o != want[i].old_release)
            detail(&bad, "route %s (from %s)%s: %d", ph(want[i].p), ph(want[i].from), "", (int)n * 10 + (int)o);
    }
    CHECK("routes: each release's shape in each phase", bad == 0);
    int ok = 1;
    for (int p = 0; p < NPH; p++)
        for (int from = 0; from < NPH; from++) {
            enum mig_shape n, o;
            mig_routes((enum mig_phase)p, (enum mig_phase)from, &n, &o);
            ok = ok && (n == MIG_SHAPE_NONE) == (o == MIG_SHAPE_NONE) && !(n == MIG_SHAPE_OLD && o == MIG_SHAPE_NEW);
        }
    CHECK("routes: both releases are routed or neither; the old never sees newer than the new", ok);
    enum mig_shape n = 9;
    mig_routes(MIG_PH_ACTIVE, MIG_PH_ACTIVE, &n, NULL);
    CHECK("routes: either output may be left out", n == MIG_SHAPE_NEW);
}

int main(void)
{
    test_words();
    test_sql_lists();
    test_in_progress();
    test_phase_status();
    test_moves();
    test_after();
    test_admission();
    test_every_way_out();
    test_walks();
    test_answers();
    test_routes();
    return UNIT_RESULT();
}

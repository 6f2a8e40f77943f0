/* A migration's lifecycle (see migration_lifecycle.h). The words below are
 * the only place they are spelled; every SQL list of statuses is built
 * from them. */
#include "migration_lifecycle.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define W_EXPANDING "expanding"
#define W_BACKFILLING "backfilling"
#define W_ACTIVE "active"
#define W_SWITCHED "switched"
#define W_COMPLETED "completed"
#define W_ROLLED_BACK "rolled_back"
#define W_FAILED "failed"

static const char *const status_words[MIG_NSTATUSES] = {
    [MIG_ST_EXPANDING] = W_EXPANDING, [MIG_ST_BACKFILLING] = W_BACKFILLING, [MIG_ST_ACTIVE] = W_ACTIVE,
    [MIG_ST_SWITCHED] = W_SWITCHED,   [MIG_ST_COMPLETED] = W_COMPLETED,     [MIG_ST_ROLLED_BACK] = W_ROLLED_BACK,
    [MIG_ST_FAILED] = W_FAILED,
};

static const char *const phase_words[MIG_NPHASES] = {
    [MIG_PH_IDLE] = "idle",          [MIG_PH_EXPANDING] = W_EXPANDING,     [MIG_PH_BACKFILLING] = W_BACKFILLING,
    [MIG_PH_FINISHING] = "finishing", [MIG_PH_ACTIVE] = W_ACTIVE,         [MIG_PH_COMPLETING] = "completing",
    [MIG_PH_COMPLETED] = W_COMPLETED, [MIG_PH_ROLLING_BACK] = "rolling_back", [MIG_PH_ROLLED_BACK] = W_ROLLED_BACK,
    [MIG_PH_FAILED] = W_FAILED,       [MIG_PH_SWITCHED] = W_SWITCHED,
};

static int valid_status(int st)
{
    return st >= 0 && st < MIG_NSTATUSES;
}

static int valid_phase(int p)
{
    return p >= 0 && p < MIG_NPHASES;
}

/* ---- statuses ---- */

const char *mig_status_word(enum mig_status st)
{
    return valid_status((int)st) ? status_words[st] : "";
}

int mig_status_of_word(const char *word)
{
    for (int st = 0; word && st < MIG_NSTATUSES; st++)
        if (!strcmp(word, status_words[st]))
            return st;
    return -1;
}

/* switched is in progress. The revert window keeps the old shape (still
 * dual-written) and a cutover is still to come: finalize, by the operator
 * or by the window's timer at any moment, drops the old shape; revert
 * moves every session back and drops the new one. Both run under the
 * fleet's hold, which waits for the proxies whose lease is current only.
 * A proxy whose lease ran out is not waited for, so it must stop relaying
 * (the fence) or its sessions would run through that cutover unheld, on
 * the shape it drops, which is the hazard the fence guards against in
 * active. The fleet's own list left switched out only because it predates
 * the status (revert after complete added it and did not touch the
 * fleet), not by decision. The price, a proxy cut off from the database
 * holding and then closing its sessions, is the one already paid during
 * active, which lasts as long. */
int mig_status_in_progress(enum mig_status st)
{
    return st == MIG_ST_EXPANDING || st == MIG_ST_BACKFILLING || st == MIG_ST_ACTIVE || st == MIG_ST_SWITCHED;
}

int mig_word_in_progress(const char *word)
{
    int st = mig_status_of_word(word);
    return st >= 0 && mig_status_in_progress((enum mig_status)st);
}

static int in_set(enum mig_status_set set, enum mig_status st)
{
    return set == MIG_SET_EVERY || (set == MIG_SET_IN_PROGRESS) == (mig_status_in_progress(st) != 0);
}

int mig_status_sql_list(enum mig_status_set set, char *out, size_t cap)
{
    size_t used = 0;
    if (!out || cap == 0)
        return -1;
    out[0] = '\0';
    for (int st = 0; st < MIG_NSTATUSES; st++) {
        if (!in_set(set, (enum mig_status)st))
            continue;
        int n = snprintf(out + used, cap - used, "%s'%s'", used ? "," : "", status_words[st]);
        if (n < 0 || (size_t)n >= cap - used) {
            out[0] = '\0';
            return -1;
        }
        used += (size_t)n;
    }
    return (int)used;
}

int mig_status_array_literal(enum mig_status_set set, char *out, size_t cap)
{
    size_t used = 0;
    if (!out || cap < 3)
        return -1;
    out[used++] = '{';
    for (int st = 0; st < MIG_NSTATUSES; st++) {
        if (!in_set(set, (enum mig_status)st))
            continue;
        int n = snprintf(out + used, cap - used, "%s%s", out[used - 1] == '{' ? "" : ",", status_words[st]);
        if (n < 0 || (size_t)n >= cap - used - 1) {
            out[0] = '\0';
            return -1;
        }
        used += (size_t)n;
    }
    out[used++] = '}';
    out[used] = '\0';
    return (int)used;
}

/* ---- phases ---- */

const char *mig_phase_word(enum mig_phase p)
{
    return valid_phase((int)p) ? phase_words[p] : "";
}

int mig_phase_of_word(const char *word)
{
    for (int p = 0; word && p < MIG_NPHASES; p++)
        if (!strcmp(word, phase_words[p]))
            return p;
    return -1;
}

const char *const *mig_phase_words(void)
{
    return phase_words;
}

int mig_phase_status(enum mig_phase p, enum mig_phase cut_from)
{
    switch (p) {
    case MIG_PH_EXPANDING: return MIG_ST_EXPANDING;
    case MIG_PH_BACKFILLING:
    case MIG_PH_FINISHING: return MIG_ST_BACKFILLING;
    /* a cutover writes its status only when it commits */
    case MIG_PH_COMPLETING: return cut_from == MIG_PH_SWITCHED ? MIG_ST_SWITCHED : MIG_ST_ACTIVE;
    case MIG_PH_ACTIVE: return MIG_ST_ACTIVE;
    case MIG_PH_SWITCHED: return MIG_ST_SWITCHED;
    case MIG_PH_COMPLETED: return MIG_ST_COMPLETED;
    case MIG_PH_ROLLED_BACK: return MIG_ST_ROLLED_BACK;
    case MIG_PH_FAILED: return MIG_ST_FAILED;
    default: return -1;
    }
}

enum mig_phase mig_phase_of_status(enum mig_status st)
{
    static const enum mig_phase of[MIG_NSTATUSES] = {
        [MIG_ST_EXPANDING] = MIG_PH_EXPANDING, [MIG_ST_BACKFILLING] = MIG_PH_BACKFILLING,
        [MIG_ST_ACTIVE] = MIG_PH_ACTIVE,       [MIG_ST_SWITCHED] = MIG_PH_SWITCHED,
        [MIG_ST_COMPLETED] = MIG_PH_COMPLETED, [MIG_ST_ROLLED_BACK] = MIG_PH_ROLLED_BACK,
        [MIG_ST_FAILED] = MIG_PH_FAILED,
    };
    return valid_status((int)st) ? of[st] : MIG_PH_IDLE;
}

/* The runner's own steps are in progress as much as the statuses around
 * them: rolling back is (a start must wait for it); the rest follows the
 * status the phase keeps in the table. */
int mig_phase_in_progress(enum mig_phase p)
{
    if (p == MIG_PH_ROLLING_BACK)
        return 1;
    int st = mig_phase_status(p, MIG_PH_ACTIVE);
    return st >= 0 && mig_status_in_progress((enum mig_status)st);
}

int mig_start_beside(enum mig_phase p)
{
    return p == MIG_PH_EXPANDING || p == MIG_PH_BACKFILLING || p == MIG_PH_FINISHING || p == MIG_PH_ACTIVE ||
           p == MIG_PH_SWITCHED;
}

int mig_phase_runs_step(enum mig_phase p)
{
    return p == MIG_PH_EXPANDING || p == MIG_PH_FINISHING || p == MIG_PH_ROLLING_BACK;
}

int mig_phase_past_backfill(enum mig_phase p)
{
    return p == MIG_PH_FINISHING || p == MIG_PH_ACTIVE || p == MIG_PH_COMPLETING || p == MIG_PH_COMPLETED ||
           p == MIG_PH_SWITCHED;
}

int mig_phase_owns_record(enum mig_phase p)
{
    return p == MIG_PH_FINISHING || p == MIG_PH_ROLLING_BACK;
}

/* ---- moves ---- */

#define B(p) (1u << (p))

/* What the runner's own work may move each phase to. A failure may end
 * any phase (MIG_PH_FAILED is allowed from every one, below); a start
 * begins again from any phase that has ended. */
static const unsigned work_moves[MIG_NPHASES] = {
    [MIG_PH_IDLE] = B(MIG_PH_EXPANDING),
    [MIG_PH_EXPANDING] = B(MIG_PH_BACKFILLING) | B(MIG_PH_ROLLING_BACK),
    [MIG_PH_BACKFILLING] = B(MIG_PH_FINISHING) | B(MIG_PH_ROLLING_BACK),
    /* -> backfilling: another proxy took the engine lock to finish it; this one follows */
    [MIG_PH_FINISHING] = B(MIG_PH_ACTIVE) | B(MIG_PH_BACKFILLING) | B(MIG_PH_ROLLING_BACK),
    [MIG_PH_ACTIVE] = B(MIG_PH_COMPLETING) | B(MIG_PH_ROLLING_BACK),
    /* committed (completed, switched), back where it started (active or
     * switched: refused, abandoned, the database away), or a revert's
     * rollback */
    [MIG_PH_COMPLETING] = B(MIG_PH_COMPLETED) | B(MIG_PH_SWITCHED) | B(MIG_PH_ACTIVE) | B(MIG_PH_ROLLING_BACK),
    [MIG_PH_COMPLETED] = B(MIG_PH_EXPANDING),
    [MIG_PH_ROLLING_BACK] = B(MIG_PH_ROLLED_BACK),
    [MIG_PH_ROLLED_BACK] = B(MIG_PH_EXPANDING),
    [MIG_PH_FAILED] = B(MIG_PH_EXPANDING) | B(MIG_PH_ROLLING_BACK),
    [MIG_PH_SWITCHED] = B(MIG_PH_COMPLETING),
};

int mig_move_allowed(enum mig_phase from, enum mig_phase to, enum mig_cause cause)
{
    if (!valid_phase((int)from) || !valid_phase((int)to))
        return 0;
    if (cause == MIG_BY_RECORD) {
        /* The table may say anything about a migration this proxy does not
         * work on (another proxy's, or one that moved while it was away),
         * but the phases whose step runs here own the row until it ends. */
        int st = mig_phase_status(to, MIG_PH_ACTIVE);
        return !mig_phase_owns_record(from) && st >= 0 &&
               mig_phase_of_status((enum mig_status)st) == to;
    }
    if (cause != MIG_BY_WORK)
        return 0;
    return to == MIG_PH_FAILED || (work_moves[from] & B(to)) != 0;
}

enum mig_phase mig_phase_after(enum mig_phase p, enum mig_event ev, enum mig_cut cut, enum mig_phase cut_from)
{
    switch (ev) {
    case MIG_EV_STEP_DONE:
        return p == MIG_PH_EXPANDING      ? MIG_PH_BACKFILLING
               : p == MIG_PH_FINISHING    ? MIG_PH_ACTIVE
               : p == MIG_PH_ROLLING_BACK ? MIG_PH_ROLLED_BACK
                                          : p;
    case MIG_EV_STEP_FAILED: return MIG_PH_FAILED;
    /* the finishing step lost to a follower goes back to watching the
     * backfill it finishes; an expand lost keeps its phase */
    case MIG_EV_LOCK_LOST: return p == MIG_PH_FINISHING ? MIG_PH_BACKFILLING : p;
    case MIG_EV_CUTOVER_COMMITTED:
        if (p != MIG_PH_COMPLETING)
            return p;
        return cut == MIG_CUT_SWITCH ? MIG_PH_SWITCHED : cut == MIG_CUT_REVERT ? MIG_PH_ROLLING_BACK : MIG_PH_COMPLETED;
    case MIG_EV_CUTOVER_ABANDONED: return p == MIG_PH_COMPLETING ? cut_from : p;
    case MIG_NEVENTS: break;
    }
    return p;
}

/* ---- admission ---- */

const char *mig_request_word(enum mig_request q)
{
    static const char *const words[MIG_NREQUESTS] = {"start", "status", "complete", "rollback", "finalize", "revert"};
    return q >= 0 && q < MIG_NREQUESTS ? words[q] : "";
}

/* Why a complete cannot run in phase p (which is not active). */
static const char *complete_hint(enum mig_phase p)
{
    switch (p) {
    case MIG_PH_EXPANDING: return "let the expand and the backfill finish";
    case MIG_PH_BACKFILLING: return "let the backfill finish";
    case MIG_PH_FINISHING: return "the validations after the backfill run; complete it once it is active";
    case MIG_PH_COMPLETING: return "a cutover runs already";
    case MIG_PH_ROLLING_BACK: return "it is being rolled back";
    case MIG_PH_ROLLED_BACK: return "it was rolled back; start it again";
    case MIG_PH_FAILED: return "roll it back, or start it again";
    case MIG_PH_SWITCHED: return "its old shape is kept for a revert; finalize or revert it";
    default: return "";
    }
}

int mig_admit_retry_ms(enum mig_phase p, enum mig_request q, const struct mig_facts *f)
{
    int behind = f && f->following && (p == MIG_PH_EXPANDING || p == MIG_PH_BACKFILLING);
    return q == MIG_REQ_COMPLETE && behind ? MIG_RETRY_FOLLOW_MS : 0;
}

int mig_refuse(int status, char *why, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (why && cap)
        vsnprintf(why, cap, fmt, ap);
    va_end(ap);
    return status;
}

static int admit_rollback(enum mig_phase p, const struct mig_facts *f, const char *name, char *why, size_t cap)
{
    if (p == MIG_PH_IDLE)
        return mig_refuse(404, why, cap, "no migration to roll back");
    if (f->rollback_asked || p == MIG_PH_ROLLING_BACK)
        return mig_refuse(409, why, cap, "migration %s is already rolling back", name);
    switch (p) {
    case MIG_PH_EXPANDING:
    case MIG_PH_FINISHING:
        /* the step is stopped (its statement cancelled), then rolled back */
        if (f->following)
            return mig_refuse(409, why, cap, "another proxy of the fleet is running the %s step of migration %s; roll"
                          " it back there, or here once that step has finished", mig_phase_word(p), name);
        if (!f->step_running)
            return mig_refuse(409, why, cap, "migration %s is %s; try again when that step has finished", name,
                          mig_phase_word(p));
        return 0;
    case MIG_PH_BACKFILLING:
    case MIG_PH_ACTIVE:
    case MIG_PH_FAILED: return 0;
    case MIG_PH_COMPLETING:
        return mig_refuse(409, why, cap, "migration %s is completing (a cutover runs); try again when it has ended", name);
    case MIG_PH_SWITCHED:
        return mig_refuse(409, why, cap, "migration %s is completed with its old shape kept: `pgtandem migrate revert`"
                      " switches every session back to it and then rolls the migration back", name);
    case MIG_PH_COMPLETED:
        return mig_refuse(409, why, cap, "migration %s is completed; write a new migration to undo it", name);
    case MIG_PH_ROLLED_BACK: return mig_refuse(409, why, cap, "migration %s is already rolled back", name);
    default: return mig_refuse(404, why, cap, "no migration to roll back");
    }
}

int mig_admit(enum mig_phase p, enum mig_request q, const struct mig_facts *f, char *why, size_t cap)
{
    static const struct mig_facts none = {0};
    if (why && cap)
        why[0] = '\0';
    f = f ? f : &none;
    const char *name = f->name ? f->name : "(none)";
    if (!valid_phase((int)p))
        return mig_refuse(500, why, cap, "the migration's phase is not known (%d)", (int)p);
    switch (q) {
    case MIG_REQ_START:
        if (f->start_checking)
            return mig_refuse(409, why, cap, "a start is being checked already");
        /* a completed migration's worker step: the steps after its contract, run again */
        if (f->step_running && p == MIG_PH_COMPLETED)
            return mig_refuse(409, why, cap, "the steps after migration %s's contract are running (an index dropped "
                          "CONCURRENTLY waits for the transactions on its table); start again when they end", name);
        if (mig_phase_in_progress(p) && !mig_start_beside(p))
            return mig_refuse(409, why, cap, "migration %s is %s: a migration starts beside it once that ends; start "
                          "again then", name, mig_phase_word(p));
        return 0;
    case MIG_REQ_STATUS:
        return p == MIG_PH_IDLE ? mig_refuse(404, why, cap, "no migration has been started or found in this database")
                                : 0;
    case MIG_REQ_COMPLETE:
        if (p == MIG_PH_IDLE)
            return mig_refuse(404, why, cap, "no migration to complete");
        if (p == MIG_PH_COMPLETED)
            return mig_refuse(409, why, cap, "migration %s is already completed", name);
        if (mig_admit_retry_ms(p, q, f))
            return mig_refuse(409, why, cap, "migration %s is %s as this proxy last read it from the database, "
                          "where another engine runs it; its next look comes within a heartbeat: try again (a "
                          "backfill must finish first)", name, mig_phase_word(p));
        if (p != MIG_PH_ACTIVE)
            return mig_refuse(409, why, cap, "migration %s is %s, not active: %s", name, mig_phase_word(p),
                          complete_hint(p));
        return 0;
    case MIG_REQ_ROLLBACK: return admit_rollback(p, f, name, why, cap);
    case MIG_REQ_FINALIZE:
    case MIG_REQ_REVERT:
        if (p == MIG_PH_SWITCHED)
            return 0;
        return mig_refuse(p == MIG_PH_IDLE ? 404 : 409, why, cap,
                      "migration %s is %s: only a migration completed with a revert window (its old shape kept) can"
                      " be %s", name, mig_phase_word(p),
                      q == MIG_REQ_REVERT ? "reverted; before complete, roll it back" : "finalized");
    default: return mig_refuse(400, why, cap, "unknown request");
    }
}

/* ---- waiting requests ---- */

int mig_waiter_may_wait(enum mig_waiter w, enum mig_phase p)
{
    switch (w) {
    case MIG_WAIT_COMPLETE: return p == MIG_PH_COMPLETING;
    /* while the step it stops ends, the batch in flight ends, or the
     * engine lock is let go (active, failed), and while it runs */
    case MIG_WAIT_ROLLBACK:
        return p == MIG_PH_EXPANDING || p == MIG_PH_BACKFILLING || p == MIG_PH_FINISHING || p == MIG_PH_ACTIVE ||
               p == MIG_PH_FAILED || p == MIG_PH_ROLLING_BACK;
    default: return 0;
    }
}

static int complete_answer(enum mig_phase to, const struct mig_wait_facts *f)
{
    if (to == MIG_PH_COMPLETED || (to == MIG_PH_SWITCHED && f->cut == MIG_CUT_SWITCH && !f->error))
        return 200;
    if (to == MIG_PH_FAILED)
        return 500;
    return f->db_unavailable ? 503 : 409;
}

void mig_waiters_on_move(enum mig_phase from, enum mig_phase to, const int present[MIG_NWAITERS],
                         const struct mig_wait_facts *f, struct mig_answers *out)
{
    static const struct mig_wait_facts none = {0};
    (void)from;
    f = f ? f : &none;
    memset(out, 0, sizeof *out);
    if (present[MIG_WAIT_COMPLETE] && to != MIG_PH_COMPLETING) {
        /* a revert answers when its rollback has ended */
        if (to == MIG_PH_ROLLING_BACK && f->cut == MIG_CUT_REVERT && !present[MIG_WAIT_ROLLBACK])
            out->complete_becomes_rollback = 1;
        else
            out->status[MIG_WAIT_COMPLETE] = complete_answer(to, f);
    }
    int rollback = present[MIG_WAIT_ROLLBACK] || out->complete_becomes_rollback;
    if (rollback && to != MIG_PH_ROLLING_BACK && !(to == MIG_PH_BACKFILLING && f->stopping_backfill))
        out->status[MIG_WAIT_ROLLBACK] = to == MIG_PH_ROLLED_BACK ? 200 : f->refused ? 409 : 500;
}

int mig_waiter_on_blocked(enum mig_waiter w, enum mig_phase p)
{
    return w == MIG_WAIT_ROLLBACK && mig_phase_runs_step(p) ? 202 : 0;
}

/* ---- routes ---- */

void mig_routes(enum mig_phase p, enum mig_phase cut_from, enum mig_shape *new_release, enum mig_shape *old_release)
{
    enum mig_shape n = MIG_SHAPE_NONE, o = MIG_SHAPE_NONE;
    switch (p) {
    /* before expand has made the new shape, and while it is undone, both
     * releases see the old one; a schema routed before it exists is
     * skipped by Postgres on the search_path */
    case MIG_PH_EXPANDING:
    case MIG_PH_ROLLING_BACK: n = o = MIG_SHAPE_OLD; break;
    case MIG_PH_BACKFILLING:
    case MIG_PH_FINISHING:
    case MIG_PH_ACTIVE: n = MIG_SHAPE_NEW, o = MIG_SHAPE_OLD; break;
    /* once switched, everyone sees the new shape until finalize or revert */
    case MIG_PH_COMPLETING:
        n = MIG_SHAPE_NEW;
        o = cut_from == MIG_PH_SWITCHED ? MIG_SHAPE_NEW : MIG_SHAPE_OLD;
        break;
    case MIG_PH_SWITCHED: n = o = MIG_SHAPE_NEW; break;
    default: break; /* idle, completed, rolled back, failed: the tables as they are */
    }
    if (new_release)
        *new_release = n;
    if (old_release)
        *old_release = o;
}

/* The runner's parts and the state they share; private to proxy/online/.
 *
 * The runner (migration_runner.c) takes the requests and is the one place
 * the phase changes. Below it, each part owns one concern and never calls
 * a function of the runner: it reports what happened through
 * runner_report (an event the runner's handler turns into a move the
 * lifecycle allows, migration_lifecycle.h), and the runner asks the
 * lifecycle what follows. The parts, bottom to top:
 *
 *   runner_beside.c    starts beside the migration in flight, each on a
 *                      thread and an engine of its own
 *   runner_beside_budget.c  one latency budget over their backfills
 *   runner_conn.c      the engine connection: open, lock, unlock, the
 *                      runner's timer, the reserved slot, the health check
 *   runner_blockers.c  who blocks the worker step, as /status shows it
 *   runner_backfill.c  the runner's side of backfill_runner.c: its hooks,
 *                      the throttle saved with the state, a failed batch's
 *                      diagnosis, the validations that finish it
 *   runner_record.c    the migration as the database records it: the
 *                      state row read back, the fleet's news followed
 *   runner_start.c     start: the slot check, the route, the expand
 *   runner_complete.c  complete, finalize, revert: the cutover's path
 *   runner_status.c    what status, metrics and throttle requests read,
 *                      and the answers to the requests that wait
 *
 * A part calls only the parts listed before it (tests/check_call_cycles.py
 * checks that no call goes round).
 *
 * State that one part alone uses is its sub-struct of struct
 * migration_runner (conn, blk, start); what several parts read (the
 * phase, the migration, the engine connection, the backfill's and the
 * cutover's numbers) stays at the top, grouped by concern. */
#ifndef PGTANDEM_RUNNER_INTERNAL_H
#define PGTANDEM_RUNNER_INTERNAL_H

#include <stddef.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "backfill_runner.h"
#include "cutover.h"
#include "engine_worker.h"
#include "metrics.h"
#include "migration.h"
#include "migration_lifecycle.h"
#include "migration_plan.h"
#include "runner_request.h"
#include "pgasync.h"
#include "settings.h"

/* A backfill batch aims at tens of milliseconds and the cutover's
 * statements carry a statement_timeout of a few seconds: a statement on
 * the engine connection unanswered for this long is a dead connection. */
#define ENGINE_WATCHDOG_MS 30000
#define RECONNECT_MAX_DELAY_MS 5000

struct migration_runner;
typedef void (*runner_step_fn)(struct migration_runner *r);

/* A request that waits for its answer. */
struct waiter {
    runner_answer_fn fn;
    void *ctx;
};

/* What a lower part tells the runner. The runner's handler decides what
 * follows (migration_lifecycle.h: mig_phase_after). */
enum runner_event {
    RUNNER_EV_STEP_DONE,         /* the phase's worker step ended well (expand, the validations) */
    RUNNER_EV_STEP_FAILED,       /* why: a step failed; a rollback asked for runs instead */
    RUNNER_EV_LOCK_TAKEN,        /* the engine lock is this proxy's: the expand or the backfill is its work */
    RUNNER_EV_LOCK_LOST,         /* another engine took the lock to do the step: follow it */
    RUNNER_EV_CONNECT_FAILED,    /* the engine connection could not be opened; r->error says why */
    RUNNER_EV_CONNECTION_LOST,   /* why, sqlstate: lost (or unusable) while in use */
    RUNNER_EV_RECORD,            /* phase: where the state of record, read back, puts the runner */
    RUNNER_EV_RELOAD,            /* the state of record decides what follows: read it again */
    RUNNER_EV_BACKFILL_DONE,     /* every range is done: the validations come next */
    RUNNER_EV_BACKFILL_STOPPED,  /* the batches in flight ended for the rollback asked for */
    RUNNER_EV_START_CLEARED,     /* the start waiting for its slot check (start.q) goes ahead */
    RUNNER_EV_CUTOVER_COMMITTED, /* committed (a contract's post steps run too): the waiting complete is answered */
    RUNNER_EV_CUTOVER_ABANDONED, /* refused or not committed; r->error says why */
    RUNNER_EV_HEALTH_TICK        /* the health check's tick: work left for an idle runner may run */
};

struct runner_news {
    const char *why;      /* NULL: nothing to say */
    const char *sqlstate; /* of why, when a server said it */
    enum mig_phase phase; /* RUNNER_EV_RECORD */
    int post_left;        /* RUNNER_EV_RECORD of a completed migration: steps after its contract are left */
};

typedef void (*runner_event_fn)(struct migration_runner *r, enum runner_event ev, const struct runner_news *news);

/* runner_conn.c's state. */
#define RUNNER_CONN_WAITERS 8 /* more than the distinct steps that share the connection */

struct runner_conn {
    runner_step_fn after_connect, after_unlock;
    int lock_look;                  /* the fleet's connection is asked whether the engine lock is held */
    int lock_free_seen;             /* it was free: this follower's turn to try comes after its stagger */
    int lock_tries, reconnects;
    struct event *timer;        /* the runner's one timer: a retry, a backoff, the next drain */
    runner_step_fn timer_step;
    struct event *health_timer; /* reconnects a connection lost while nothing used it */
    /* A connection slot held for the worker step that comes next
     * (validations, a rollback, a diagnosis) while a migration is in
     * progress: it is given up just before the worker connects, and taken
     * again once the step has ended, so clients that fill the database
     * mid-way cannot leave a step without a slot. */
    struct pgasync reserve;
    int reserve_logged;         /* its failure was logged for this outage */
    /* Closed on purpose: a fleet member with no step to run keeps only the
     * fleet's connection (which hears the news); the next use opens it. */
    int closed_while_idle;
    /* Steps that found the connection busy, in the order they asked; run
     * on the loop's next turn after it is free (pgasync_on_idle). */
    runner_step_fn waiting[RUNNER_CONN_WAITERS];
    int nwaiting;
    struct event *idle_ev;
};

/* runner_blockers.c's state. */
struct runner_blockers {
    struct event *timer; /* while a worker step runs: who blocks it */
    json_t *by;          /* the backends its statement waits for, as last seen */
    double seen_ms, logged_ms;
    int polling;         /* db is busy with that question */
};

/* runner_start.c's state. */
struct runner_start {
    int route_attempts;         /* drains tried before the expand */
    int route_holding;          /* the relay holds for that drain */
    unsigned int route_seed;
    const char *expand_body;    /* the migration to expand once the sessions are routed */
    size_t expand_body_len;
    struct waiter w;            /* a start waiting for the connection-slot check */
    struct runner_request q;    /* its request, body owned */
};

struct migration_runner {
    struct event_base *base;
    struct relay *relay;
    struct fleet *fleet;            /* NULL: no fleet */
    char *engine_db;
    runner_event_fn report;         /* the runner's handler of what the parts below it report */
    enum mig_phase phase;
    char *name;
    char version_schema[96];        /* the new shape's views */
    char old_schema[96];            /* the old shape's views, for every other session */
    struct migration mig;
    int have_mig;
    struct mig_plan plan;
    int have_plan;
    char error[1024];
    int step_status;                /* ENGINE_OK/FAILED/INVALID of the last worker step */
    struct engine_worker worker;    /* the engine's blocking steps, off the loop */
    struct pgasync db;              /* the engine connection (runner_conn.c opens it) */
    int holds_lock;                 /* db holds the one-engine advisory lock */
    /* following the fleet */
    int following;                  /* the migration is another engine's work */
    double follow_since_ms;         /* when this follower first saw the backfill running elsewhere */
    int takeover_at_once;           /* a backfill found at start may be taken over without waiting */
    long long record_age_ms;        /* how long ago the state row last changed, when last read */
    char table_status[24];          /* what pgtandem.migrations said when this proxy last agreed with it */
    double own_move_ms;             /* when this proxy's own work last moved the phase (clock_now_ms) */
    char fleet_latest[2][128];      /* the fleet's last news: the most recent migration's name and status */
    int state_loading;              /* the state row's load is asked for (load_state) and not answered */
    int state_by_fleet;             /* reads of it asked of the fleet's connection, unanswered */
    uint64_t look_after_load;       /* a fleet look applied once that load is (relay_version_look_applied) */
    struct json_t *in_flight;       /* every migration in flight as the fleet last saw it ([{name, status}]),
                                       for status; NULL before the first look */
    char before_start[2][128];      /* that news when this proxy began a start of its own: no news after it
                                     * (a start refused before it recorded anything leaves it the latest) */
    /* the backfill */
    struct bf_runner bfr;           /* the backfill's batches (backfill_runner.h) */
    long long recorded_rows;        /* rows done by whoever ran the backfill (the state table) */
    struct throttle_settings thr;   /* live backfill settings (settings.h) */
    int throttle_dirty;             /* to be saved with the migration's state */
    double throttle_read_ms;        /* when the batches last read what other proxies saved */
    struct event *throttle_timer;   /* a save not running the backfill waits for the connection */
    struct histogram batch_seconds; /* batches run by this process for this migration */
    int stop_backfill;              /* a rollback waits for the batch in flight */
    /* the cutover */
    enum mig_cut cut_kind;          /* of the cutover in progress or last run */
    enum mig_phase cut_from;        /* the phase it returns to when it does not commit */
    struct cutover cut;
    struct cutover_options cut_opt;
    int have_cut_rep;               /* cut.rep describes a cutover of this migration */
    int complete_step;              /* runner_complete.c's step in progress */
    struct {                        /* steps after a contract left to run (lost with a connection or a proxy) */
        int left;                   /* the state row says some are left, or this proxy's run did not finish */
        int tries;                  /* runs that did not finish, for the backoff */
        double due_ms;              /* the next run is not before then */
    } post;
    int db_unavailable;             /* the complete waiting ended because the database could not be reached */
    struct event *window_timer;     /* a revert window's end (switched): finalize */
    /* requests that wait */
    struct waiter complete_w, rollback_w;
    int rollback_asked;             /* a rollback was asked for and has not started yet (its request may
                                     * have been answered: 202, its step blocked by another session) */
    struct runner_conn conn;
    struct runner_blockers blk;
    struct runner_start start;
    struct beside *beside;          /* starts beside the migration in flight (runner_beside.c), newest first */
    struct beside_budget *beside_budget; /* the latency budget over their backfills (runner_beside_budget.c) */
};

/* ---- shared by every part ---- */

static inline void runner_report(struct migration_runner *r, enum runner_event ev, const char *why,
                                 const char *sqlstate)
{
    struct runner_news n = {.why = why, .sqlstate = sqlstate, .phase = MIG_PH_IDLE};
    r->report(r, ev, &n);
}

/* Answers w once: a second call finds it empty. body: owned. */
static inline void runner_answer(struct waiter *w, int status, json_t *body)
{
    runner_answer_fn fn = w->fn;
    void *ctx = w->ctx;
    w->fn = NULL;
    w->ctx = NULL;
    if (fn)
        fn(ctx, status, body);
    else
        json_decref(body);
}

static inline json_t *runner_error_json(const char *msg)
{
    return json_pack("{s:s}", "error", msg);
}

/* ---- runner_conn.c ---- */

int runner_conn_init(struct migration_runner *r);
void runner_conn_free(struct migration_runner *r);
void runner_conn_watch_health(struct migration_runner *r);
/* Runs next once the engine connection is open and free; else reports
 * CONNECT_FAILED. A connection busy with another statement (a state read,
 * a throttle save, the settings after a reconnect) is waited for. */
void with_connection(struct migration_runner *r, runner_step_fn next);
/* A follower whose engine connection is closed reads the news (the state
 * row, whether the engine lock is held) on the fleet's (fleet_read). */
int runner_reads_by_fleet(const struct migration_runner *r);
/* Some step waits for the busy connection to be free. */
int conn_waiting(const struct migration_runner *r);
/* The worker's engine takes the one-engine advisory lock itself: let go first. */
void release_lock_then(struct migration_runner *r, runner_step_fn next);
/* A fleet member with no step to run lets its connection go; the health
 * check leaves it closed, the next with_connection opens it. */
void close_while_idle(struct migration_runner *r);
void drop_connection(struct migration_runner *r);
/* Tries the engine lock: LOCK_TAKEN, a retry, or STEP_FAILED. A follower
 * that gets it takes the step it saw over (LOCK_TAKEN) only when a read
 * made under the lock shows that step orphaned; otherwise the lock goes
 * back and the state is read again (RELOAD). */
void take_engine_lock(struct migration_runner *r);
/* Before a backfill's worker step: the engine lock lent to it, or let go of. */
void hand_lock_to_step(struct migration_runner *r);
/* The fleet's lease (3 s without a fleet): a step left this long twice is orphaned. */
double runner_lease_ms(const struct migration_runner *r);
void schedule(struct migration_runner *r, long delay_ms, runner_step_fn step);
void schedule_backoff(struct migration_runner *r, runner_step_fn step);
void cancel_timer(struct migration_runner *r);
int timer_armed(const struct migration_runner *r);
int connection_lost(const char *sqlstate);
void outage_reason(struct migration_runner *r, char *out, size_t n, const char *why, const char *sqlstate);
void keep_slot_reserved(struct migration_runner *r);
void give_slot_to_step(struct migration_runner *r);

/* ---- runner_record.c ---- */

void runner_set_name(struct migration_runner *r, const char *name);
void runner_reset_metrics(struct migration_runner *r);
void runner_reset_migration(struct migration_runner *r);
/* The state row as MIG_STATE_LOAD_SQL reads it (or why it could not be). */
void record_read(struct migration_runner *r, PGresult *res, const char *error, const char *sqlstate);
/* Reads the state row; load_state opens the connection first. */
void send_load_state(struct migration_runner *r);
void load_state(struct migration_runner *r);
/* At start: the migration the database knows of, followed. */
/* The schemas a migration's new release and the releases before it see in
 * phase p (migration_lifecycle.h's mig_routes), for this engine's own
 * route (route_for) and the fleet's of the others in flight: old_out NULL
 * when nobody is routed, new_out NULL when the new release sees the old
 * shape too. */
void record_route_schemas(enum mig_phase p, enum mig_phase cut_from, const char *version_schema,
                          const char *old_schema, const char **new_out, const char **old_out);
void record_find_latest(struct migration_runner *r);
void record_follow_fleet(struct migration_runner *r);
/* A start of this proxy's own begins: the fleet's news of the migration
 * it replaces is no news while nothing newer is recorded. */
void record_own_start(struct migration_runner *r);
/* This proxy is doing the migration's work (a worker step, a batch, the
 * lock, a cutover, a request waiting). */
int record_working_locally(const struct migration_runner *r);

/* ---- runner_blockers.c ---- */

/* Polls while a worker step runs; forgets the blockers otherwise. */
void watch_blockers(struct migration_runner *r);
void answer_rollback_if_blocked(struct migration_runner *r);
void runner_blockers_free(struct migration_runner *r);
/* The migrated tables as a Postgres text[] literal. */
char *tables_literal(const struct migration_runner *r);

/* ---- runner_backfill.c ---- */

int runner_backfill_init(struct migration_runner *r);
void runner_backfill_free(struct migration_runner *r);
/* Settings changed by a request: the batches running here save them
 * between two batches; otherwise they are saved now, for the proxy that
 * runs the backfill (it reads them between its batches). Returns whether
 * the backfill runs on this proxy. */
int backfill_throttle_changed(struct migration_runner *r);
void backfill_restore_throttle(struct migration_runner *r, const char *saved);
void backfill_start_batches(struct migration_runner *r);
/* The validations after the backfill, on the worker (phase finishing). */
void backfill_finish_step(struct migration_runner *r);
void settings_throttle_from_migration(struct throttle_settings *t, const struct mig_backfill_settings *bf);

/* ---- runner_start.c ---- */

/* Checks the connection slots, then reports START_CLEARED (or answers). */
void start_check_slots(struct migration_runner *r, const struct runner_request *q, const struct waiter *w);
void start_check_refused(struct migration_runner *r, int status, const char *why);
/* Reads the request's migration into r; its name (owned), or NULL once w is answered. */
char *start_parse(struct migration_runner *r, const struct runner_request *q, struct waiter *w);
void start_route_then_expand(struct migration_runner *r);
/* The drain before the expand is on: the step of phase expanding runs. */
int start_routing(const struct migration_runner *r);
/* A rollback came before the expand began: nothing ran; the drain ends. */
void start_cancel_before_expand(struct migration_runner *r);
void redo_expand(struct migration_runner *r);
void runner_start_free(struct migration_runner *r);

/* ---- runner_complete.c ---- */

/* complete from active: refusal, checks, the state row again, the cutover. */
void complete_run(struct migration_runner *r);
/* finalize or revert from switched: the state row again, the cutover. */
void complete_from_switched(struct migration_runner *r);
/* The shape each release sees in phase p, pushed to the relay. */
void route_for(struct migration_runner *r, enum mig_phase p);
/* The state row of a completed migration says whether steps after its
 * contract are left; those left run again on the worker, with backoff,
 * when the health check finds the runner idle (post_run_if_due). */
void post_left_by_record(struct migration_runner *r, int left);
void post_run_if_due(struct migration_runner *r);
json_t *cutover_json(const struct migration_runner *r);

/* ---- runner_beside.c ---- */

/* Starts the migration of a request body beside the one in flight, on a
 * thread and an engine of its own: 202 with its name, else the HTTP
 * status to answer with err (400 a body that is no migration, 409 a
 * directory, or the same migration starting already). */
int beside_start(struct migration_runner *r, const char *body, size_t len, char *name, size_t namecap,
                 char *err, size_t errlen);
/* 1 while a start beside of that name runs here. */
int beside_running(const struct migration_runner *r, const char *name);
/* [{name, state: running|started|failed|refused, error}], newest first. */
json_t *beside_json(struct migration_runner *r);
/* Stops every start beside between two of its steps and joins it. */
void beside_stop_all(struct migration_runner *r);

/* ---- runner_beside_budget.c ---- */

/* The pace every start beside's backfill keeps (made on first use, for
 * name's start; NULL when it cannot be: then it keeps its own throttle). */
struct backfill_pace *beside_budget_pace(struct migration_runner *r, const char *name);
/* What it keeps while one of them backfills, else null: the status's
 * beside_budget. */
json_t *beside_budget_json(const struct migration_runner *r);
/* After beside_stop_all: no thread reads the pace any more. */
void beside_budget_free(struct migration_runner *r);

/* ---- runner_status.c ---- */

void answer_complete(struct migration_runner *r, int status);
void answer_rollback(struct migration_runner *r, int status);
void status_answer(struct migration_runner *r, const struct waiter *w, const struct mig_facts *f);
void throttle_answer(struct migration_runner *r, const struct runner_request *q);

#endif
